//! Per-request metric handles, kept per route.
//!
//! `metrics::counter!` with labels builds a label set (several `String`s) and looks it up in the
//! recorder's registry on every call; at tens of thousands of requests a second that was a visible
//! share of a cheap request's CPU. The handles are looked up once per (route template, method,
//! status) and kept here; a request then costs a read lock, a map lookup by `&str` and two atomic
//! updates.
//!
//! Labels stay bounded: routes are templates (or `unmatched`), statuses are three digits, and a
//! method outside the standard ones is labelled `OTHER`, so a client cannot grow the series with
//! made-up methods.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Histogram};

/// The handles of one route: its latency histogram and a request counter per (method, status).
struct RouteHandles {
    duration: Histogram,
    requests: Vec<(&'static str, u16, Counter)>,
}

impl RouteHandles {
    fn counter(&self, method: &str, status: u16) -> Option<&Counter> {
        self.requests.iter().find(|(m, s, _)| *m == method && *s == status).map(|(_, _, counter)| counter)
    }
}

fn routes() -> &'static RwLock<HashMap<String, RouteHandles>> {
    static ROUTES: OnceLock<RwLock<HashMap<String, RouteHandles>>> = OnceLock::new();
    ROUTES.get_or_init(Default::default)
}

/// The method's label: its name if standard, else `OTHER`.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    match STANDARD.iter().find(|m| *m == method) {
        Some(standard) => standard.as_str(),
        None => "OTHER",
    }
}

/// Counts one request and records its duration.
pub fn record(route: &str, method: &Method, status: u16, elapsed: Duration) {
    let method = method_label(method);
    let seconds = elapsed.as_secs_f64();
    if let Ok(routes) = routes().read()
        && let Some(handles) = routes.get(route)
        && let Some(counter) = handles.counter(method, status)
    {
        counter.increment(1);
        handles.duration.record(seconds);
        return;
    }
    // First request of this kind: register its handles (the recorder must be installed first, or
    // the handles would be no-ops for good).
    let _ = super::prometheus();
    let mut routes = routes().write().unwrap_or_else(|poisoned| poisoned.into_inner());
    let handles = routes.entry(route.to_string()).or_insert_with(|| RouteHandles {
        duration: metrics::histogram!("kifly_http_request_duration_seconds", "route" => route.to_string()),
        requests: Vec::new(),
    });
    match handles.counter(method, status) {
        Some(counter) => counter.increment(1),
        None => {
            let counter = metrics::counter!(
                "kifly_http_requests_total",
                "route" => route.to_string(), "method" => method, "status" => status.to_string()
            );
            counter.increment(1);
            handles.requests.push((method, status, counter));
        }
    }
    handles.duration.record(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_names_and_others_are_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("method")), "OTHER");
        assert_eq!(method_label(&Method::from_bytes(b"PROPFIND").expect("method")), "OTHER");
    }

    /// The value of the request counter with these labels in the Prometheus text, if any.
    fn requests_total(text: &str, route: &str, method: &str, status: &str) -> Option<f64> {
        let labels =
            [format!(r#"route="{route}""#), format!(r#"method="{method}""#), format!(r#"status="{status}""#)];
        text.lines()
            .filter(|l| l.starts_with("kifly_http_requests_total{"))
            .find(|l| labels.iter().all(|label| l.contains(label.as_str())))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn each_request_is_counted_once_under_its_labels() {
        let route = "/test/request_metrics/{id}";
        for _ in 0..3 {
            record(route, &Method::GET, 200, Duration::from_millis(1));
        }
        record(route, &Method::GET, 404, Duration::from_millis(1));
        record(route, &Method::from_bytes(b"BREW").expect("method"), 418, Duration::from_millis(1));
        let text = super::super::prometheus().render();
        assert_eq!(requests_total(&text, route, "GET", "200"), Some(3.0), "{text}");
        assert_eq!(requests_total(&text, route, "GET", "404"), Some(1.0), "{text}");
        assert_eq!(requests_total(&text, route, "OTHER", "418"), Some(1.0), "{text}");
        assert!(!text.contains("BREW"), "a made-up method became a label:\n{text}");
        let count = text
            .lines()
            .find(|l| l.starts_with("kifly_http_request_duration_seconds_count{") && l.contains(route))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert_eq!(count, Some(5.0), "{text}");
    }
}
