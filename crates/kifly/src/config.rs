//! Configuration: compiled defaults, then an optional `kifly.toml`, then `KIFLY_*` environment
//! variables, then command-line flags. A bad value fails at start with an error naming the key.
//!
//! The keys are flat (`rate_limit_agent`, not `rate_limit.agent`) so that each one maps to exactly one
//! environment variable (`KIFLY_RATE_LIMIT_AGENT`) and one TOML key.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting, after all layers are merged.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub bind: String,
    /// Folder for the embedded database, the generated server secret and other local state.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to `sqlite://{data_dir}/kifly.db`.
    pub database_url: Option<String>,
    /// Redis for shared rate limits in cluster mode.
    pub redis_url: Option<String>,
    /// The public base URL (for links the server hands out); defaults to `http://{bind}`.
    pub public_url: Option<String>,
    /// Server secret for keyed hashes of API keys. Embedded mode generates one into the data dir;
    /// cluster nodes must share one.
    pub secret_key: Option<String>,
    /// `text` or `json`.
    pub log_format: String,
    /// `REQUESTS/SECONDS` or `off`, per group.
    pub rate_limit_agent: String,
    pub rate_limit_mcp: String,
    pub rate_limit_feedback: String,
    pub rate_limit_anon: String,
    /// Hosts `/api/mcp` accepts in `Host` and `Origin` (DNS-rebinding protection): names or
    /// `name:port`; a comma-separated string or a list; `*` accepts any host. The host of
    /// `public_url` is always accepted as well.
    #[serde(deserialize_with = "string_or_list")]
    pub mcp_allowed_hosts: Vec<String>,
    /// The semantic layer of search: `off` (default), `ngram` (built-in hashed character trigrams;
    /// no model file) or `model2vec` (a Model2Vec static model read from `search_model_path`).
    pub search_embedder: String,
    /// Directory of the Model2Vec model (`model.safetensors`, `tokenizer.json`, optional
    /// `config.json`) for `search_embedder = "model2vec"`. Only read from disk, never downloaded.
    pub search_model_path: Option<PathBuf>,
    /// Share of the semantic score in the blended relevance, 0 to 1 (when an embedder is on).
    pub search_semantic_weight: f64,
    /// Point every payment provider at the built-in sandbox even when credentials are set
    /// (`serve --demo` turns it on). Without credentials a provider always uses the sandbox.
    pub payments_sandbox: bool,
    /// Stripe secret key (`sk_live_…` / `sk_test_…`): rails 1 and 3.
    pub stripe_secret_key: Option<String>,
    /// Signing secret of the Stripe webhook endpoint (`whsec_…`).
    pub stripe_webhook_secret: Option<String>,
    pub stripe_base_url: String,
    /// The Stripe business network profile id put in MPP challenges (clients mint tokens for it).
    pub stripe_network_id: String,
    /// Coinbase Commerce API key: rail 2.
    pub coinbase_api_key: Option<String>,
    /// Coinbase Commerce webhook shared secret.
    pub coinbase_webhook_secret: Option<String>,
    pub coinbase_base_url: String,
    /// The EVM address that receives x402 USDC payments. Unset turns x402 off (except in the sandbox).
    pub x402_pay_to: Option<String>,
    /// CAIP-2 network of x402 payments: `eip155:8453` (Base) or `eip155:84532` (Base Sepolia).
    pub x402_network: String,
    /// The x402 facilitator; unset uses the built-in sandbox facilitator.
    pub x402_facilitator_url: Option<String>,
    /// How long a hosted payment page (rails 1 and 2) stays payable, in minutes (Stripe: 30 to 1440).
    pub checkout_expiry_minutes: u32,
    /// How long an MPP / x402 challenge stays valid, in seconds.
    pub payment_challenge_seconds: u32,
    /// SMTP server for buyer mail; unset keeps mail in the database outbox and prints it to the log.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// `starttls` (default), `tls` (implicit TLS, usually port 465) or `none` (loopback/tests only).
    pub smtp_tls: String,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// The `From` of buyer mail.
    pub mail_from: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("kifly-data"),
            database_url: None,
            redis_url: None,
            public_url: None,
            secret_key: None,
            log_format: "text".into(),
            rate_limit_agent: "60/60".into(),
            rate_limit_mcp: "120/60".into(),
            rate_limit_feedback: "10/60".into(),
            rate_limit_anon: "60/60".into(),
            mcp_allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            search_embedder: "off".into(),
            search_model_path: None,
            search_semantic_weight: 0.3,
            payments_sandbox: false,
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_base_url: "https://api.stripe.com".into(),
            stripe_network_id: "profile_kifly_sandbox".into(),
            coinbase_api_key: None,
            coinbase_webhook_secret: None,
            coinbase_base_url: "https://api.commerce.coinbase.com".into(),
            x402_pay_to: None,
            x402_network: "eip155:84532".into(),
            x402_facilitator_url: None,
            checkout_expiry_minutes: 30,
            payment_challenge_seconds: 300,
            smtp_host: None,
            smtp_port: 587,
            smtp_tls: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            mail_from: "Kifly <no-reply@kifly.localhost>".into(),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

/// Accepts `"a, b"` (environment variables) as well as `["a", "b"]` (TOML).
fn string_or_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrList {
        One(String),
        Many(Vec<String>),
    }
    let items = match StringOrList::deserialize(deserializer)? {
        StringOrList::One(s) => s.split(',').map(str::to_string).collect(),
        StringOrList::Many(list) => list,
    };
    Ok(items.into_iter().map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect())
}

/// A configuration error, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// A rate-limit setting: `limit` requests per `period_secs`, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting {
    pub limit: u32,
    pub period_secs: u32,
}

/// Parses `REQUESTS/SECONDS` or `off`.
pub fn parse_rate(key: &str, value: &str) -> Result<Option<RateSetting>, ConfigError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || ConfigError(format!("{key} = {value:?}: expected REQUESTS/SECONDS (e.g. 60/60) or off"));
    let (limit, period) = value.split_once('/').ok_or_else(bad)?;
    let limit: u32 = limit.trim().parse().map_err(|_| bad())?;
    let period_secs: u32 = period.trim().parse().map_err(|_| bad())?;
    if limit == 0 || period_secs == 0 {
        return Err(bad());
    }
    Ok(Some(RateSetting { limit, period_secs }))
}

impl Config {
    /// Merges the layers. `file` is `--config`; without it `./kifly.toml` is read if present.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!("config file {} does not exist", path.display())));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("kifly.toml")),
        }
        // `KIFLY_LOG` is the log filter (read by the logger, not a setting) and `KIFLY_TEST_*` belong to
        // the test suites; every other `KIFLY_*` variable must be a known key.
        let env = Env::prefixed("KIFLY_")
            .ignore(&["log"])
            .filter(|k| !k.as_str().to_ascii_lowercase().starts_with("test_"));
        figment = figment.merge(env).merge(Serialized::defaults(flags));
        let config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            let key = if key.is_empty() { "config".to_string() } else { key };
            ConfigError(format!("{key}: {}", e.kind))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError(format!(
                "bind = {:?}: expected HOST:PORT such as 127.0.0.1:8080",
                self.bind
            )));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError(format!("log_format = {:?}: expected text or json", self.log_format)));
        }
        for (key, value) in self.rate_settings_raw() {
            parse_rate(key, value)?;
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "database_url: expected sqlite://… or postgres://…, got {}",
                redact_url(url)
            )));
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError(format!("redis_url: expected redis://…, got {}", redact_url(url))));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError(format!("public_url = {url:?}: expected an http(s) URL")));
        }
        if let Some(secret) = &self.secret_key
            && secret.len() < 32
        {
            return Err(ConfigError("secret_key: must be at least 32 characters".into()));
        }
        if !matches!(self.search_embedder.as_str(), "off" | "ngram" | "model2vec") {
            return Err(ConfigError(format!(
                "search_embedder = {:?}: expected off, ngram or model2vec",
                self.search_embedder
            )));
        }
        if self.search_embedder == "model2vec" {
            // The cheap checks (files, header); the server loads the model when it starts.
            let Some(path) = &self.search_model_path else {
                return Err(ConfigError(
                    "search_model_path: required with search_embedder = \"model2vec\" (a directory with model.safetensors and tokenizer.json)".into(),
                ));
            };
            if let Err(e) = crate::search::model2vec::check_model_dir(path) {
                return Err(ConfigError(format!(
                    "search_model_path = {:?}: {e}",
                    path.display().to_string()
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.search_semantic_weight) {
            return Err(ConfigError(format!(
                "search_semantic_weight = {}: expected a number from 0 to 1",
                self.search_semantic_weight
            )));
        }
        for (key, url) in [
            ("stripe_base_url", Some(&self.stripe_base_url)),
            ("coinbase_base_url", Some(&self.coinbase_base_url)),
            ("x402_facilitator_url", self.x402_facilitator_url.as_ref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ConfigError(format!("{key} = {url:?}: expected an http(s) URL")));
            }
        }
        for (key, secret, needs) in [
            ("stripe_webhook_secret", &self.stripe_webhook_secret, &self.stripe_secret_key),
            ("coinbase_webhook_secret", &self.coinbase_webhook_secret, &self.coinbase_api_key),
        ] {
            if needs.is_some() && secret.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError(format!(
                    "{key}: required with real provider credentials (webhooks are how hosted payments are confirmed)"
                )));
            }
        }
        if kifly_payments::x402::EvmNetwork::find(&self.x402_network).is_none() {
            return Err(ConfigError(format!(
                "x402_network = {:?}: expected eip155:8453 (Base) or eip155:84532 (Base Sepolia)",
                self.x402_network
            )));
        }
        if let Some(address) = &self.x402_pay_to
            && kifly_payments::x402::eip712::parse_hex_fixed::<20>(address, "x402_pay_to").is_err()
        {
            return Err(ConfigError(format!("x402_pay_to = {address:?}: expected a 0x… EVM address")));
        }
        if !(30..=1440).contains(&self.checkout_expiry_minutes) {
            return Err(ConfigError(format!(
                "checkout_expiry_minutes = {}: expected 30 to 1440",
                self.checkout_expiry_minutes
            )));
        }
        if !(30..=3600).contains(&self.payment_challenge_seconds) {
            return Err(ConfigError(format!(
                "payment_challenge_seconds = {}: expected 30 to 3600",
                self.payment_challenge_seconds
            )));
        }
        if !matches!(self.smtp_tls.as_str(), "none" | "starttls" | "tls") {
            return Err(ConfigError(format!(
                "smtp_tls = {:?}: expected starttls, tls or none",
                self.smtp_tls
            )));
        }
        if self.smtp_username.is_some() != self.smtp_password.is_some() {
            return Err(ConfigError("smtp_username / smtp_password: set both or neither".into()));
        }
        if !self.mail_from.contains('@') {
            return Err(ConfigError(format!("mail_from = {:?}: expected an e-mail address", self.mail_from)));
        }
        if self.mcp_allowed_hosts.is_empty() {
            return Err(ConfigError(
                "mcp_allowed_hosts: list at least one host (e.g. localhost,127.0.0.1), or * for any".into(),
            ));
        }
        for host in &self.mcp_allowed_hosts {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if host != "*"
                && bare.parse::<std::net::IpAddr>().is_err()
                && host.parse::<axum::http::uri::Authority>().map_or(true, |a| a.as_str() != host)
            {
                return Err(ConfigError(format!(
                    "mcp_allowed_hosts: {host:?} is not a host name, IP address or host:port"
                )));
            }
        }
        Ok(())
    }

    fn rate_settings_raw(&self) -> [(&'static str, &str); 4] {
        [
            ("rate_limit_agent", &self.rate_limit_agent),
            ("rate_limit_mcp", &self.rate_limit_mcp),
            ("rate_limit_feedback", &self.rate_limit_feedback),
            ("rate_limit_anon", &self.rate_limit_anon),
        ]
    }

    /// The effective database URL.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("kifly.db").display()))
    }

    /// The hosts `/api/mcp` accepts: `mcp_allowed_hosts` plus the host of `public_url`.
    pub fn mcp_hosts(&self) -> Vec<String> {
        let mut hosts = self.mcp_allowed_hosts.clone();
        let public_host = self
            .public_url
            .as_deref()
            .and_then(|url| url.parse::<axum::http::Uri>().ok())
            .and_then(|uri| uri.host().map(str::to_ascii_lowercase));
        if let Some(host) = public_host
            && !hosts.contains(&host)
        {
            hosts.push(host);
        }
        hosts
    }

    pub fn rate(&self, key: &str) -> Option<RateSetting> {
        self.rate_settings_raw()
            .into_iter()
            .find(|(k, _)| *k == key)
            .and_then(|(k, v)| parse_rate(k, v).ok().flatten())
    }
}

/// Hides the password of a URL such as `postgres://user:pass@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

impl fmt::Display for Config {
    /// TOML, with secrets redacted: what `kifly config` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.clone();
        shown.database_url = Some(redact_url(&self.database_url()));
        shown.redis_url = self.redis_url.as_deref().map(redact_url);
        shown.secret_key = self.secret_key.as_ref().map(|_| "***".into());
        for secret in [
            &mut shown.stripe_secret_key,
            &mut shown.stripe_webhook_secret,
            &mut shown.coinbase_api_key,
            &mut shown.coinbase_webhook_secret,
            &mut shown.smtp_password,
        ] {
            if secret.is_some() {
                *secret = Some("***".into());
            }
        }
        let text = toml::to_string(&shown).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Config {
        /// The defaults overlaid with a TOML snippet, validated.
        fn load_str(toml: &str) -> Result<Config, ConfigError> {
            let config: Config = Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract()
                .map_err(|e| ConfigError(format!("{}: {}", e.path.join("."), e.kind)))?;
            config.validate()?;
            Ok(config)
        }
    }

    #[test]
    fn rate_settings_parse() {
        assert_eq!(parse_rate("k", "60/60").unwrap(), Some(RateSetting { limit: 60, period_secs: 60 }));
        assert_eq!(parse_rate("k", "off").unwrap(), None);
        let err = parse_rate("rate_limit_agent", "sixty").unwrap_err().to_string();
        assert!(err.contains("rate_limit_agent"), "{err}");
    }

    #[test]
    fn mcp_hosts_come_from_a_list_or_a_comma_separated_string() {
        let toml =
            Config::load_str("mcp_allowed_hosts = [\"Shop.Example.com\", \"localhost:8080\"]").unwrap();
        assert_eq!(toml.mcp_allowed_hosts, ["shop.example.com", "localhost:8080"]);
        let csv = Config::load_str("mcp_allowed_hosts = \"a.example, ::1 ,\"").unwrap();
        assert_eq!(csv.mcp_allowed_hosts, ["a.example", "::1"]);
        let with_public =
            Config { public_url: Some("https://kifly.example.org/x".into()), ..Config::default() };
        assert!(with_public.mcp_hosts().contains(&"kifly.example.org".to_string()));
        let err = Config::load_str("mcp_allowed_hosts = \"bad host\"").err().unwrap().to_string();
        assert!(err.contains("mcp_allowed_hosts"), "{err}");
        let err = Config::load_str("mcp_allowed_hosts = \"\"").err().unwrap().to_string();
        assert!(err.contains("mcp_allowed_hosts"), "{err}");
    }

    #[test]
    fn the_model2vec_embedder_needs_a_usable_model_directory() {
        let err = Config::load_str("search_embedder = \"model2vec\"").err().unwrap().to_string();
        assert!(err.contains("search_model_path: required"), "{err}");
        let err = Config::load_str(
            "search_embedder = \"model2vec\"\nsearch_model_path = \"/nonexistent/kifly-model\"",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("search_model_path = \"/nonexistent/kifly-model\": "), "{err}");
        let err = Config::load_str("search_embedder = \"bert\"").err().unwrap().to_string();
        assert!(err.contains("search_embedder"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "search_embedder = \"model2vec\"\nsearch_model_path = {:?}",
            dir.path().display().to_string()
        );
        let err = Config::load_str(&toml).err().unwrap().to_string();
        assert!(err.contains("search_model_path") && err.contains("model.safetensors"), "{err}");
        crate::search::model2vec::write_model_dir(
            dir.path(),
            &["tent"],
            &[1.0, 0.0],
            crate::search::model2vec::Dtype::F16,
        )
        .unwrap();
        let config = Config::load_str(&toml).unwrap();
        assert_eq!(config.search_model_path.as_deref(), Some(dir.path()));
        // Off, the path is not looked at.
        assert!(Config::load_str("search_model_path = \"/nonexistent\"").is_ok());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://kifly:hunter2@db:5432/k"), "postgres://kifly:***@db:5432/k");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
