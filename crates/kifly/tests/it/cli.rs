//! The real `kifly` binary: keys, catalog import, limits, config and `serve --demo` (listening line,
//! demo keys printed once, health endpoints, live limit changes, graceful shutdown on SIGTERM).
//!
//! Every test runs in its own temp dir, passed as `--data-dir` and used as the working directory (so
//! neither `./kifly-data` nor a stray `./kifly.toml` is touched), with every inherited `KIFLY_*`
//! variable removed and `KIFLY_LOG=warn`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::process::*;

/// A two-seller catalog: `alpha-goods` (nationwide) and `beta-goods` (California only).
fn fixture_catalog() -> Value {
    json!({"sellers": [
        {
            "handle": "alpha-goods", "name": "Alpha Goods", "tier": "purchasable", "delivery_fee_cents": 500,
            "coverage": {"nationwide": true},
            "products": [{
                "handle": "alpha-mug", "title": "Alpha Mug", "category": "kitchen",
                "variants": [{"sku": "ALPHA-MUG-1", "name": "Default", "price_cents": 1200, "inventory": 10}]
            }]
        },
        {
            "handle": "beta-goods", "name": "Beta Goods", "tier": "purchasable",
            "coverage": {"states": ["CA"]},
            "products": [{
                "handle": "beta-lamp", "title": "Beta Lamp", "category": "home",
                "variants": [{"sku": "BETA-LAMP-1", "name": "Default", "price_cents": 4500, "inventory": null}]
            }]
        }
    ]})
}

/// Writes `contents` to `dir/name` and returns the path.
fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write fixture");
    path
}

/// A temp dir with the fixture catalog imported.
fn imported_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let file =
        write_file(dir.path(), "catalog.json", &serde_json::to_string_pretty(&fixture_catalog()).unwrap());
    let run = kifly(dir.path(), &["catalog", "import", file.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("imported 2 sellers, 2 products, 2 variants"), "stdout: {}", run.stdout);
    dir
}

/// `kfa_live_` followed by at least 32 base62 characters and nothing else.
#[track_caller]
fn assert_agent_key(key: &str) {
    let rest =
        key.strip_prefix("kfa_live_").unwrap_or_else(|| panic!("key {key:?} lacks the kfa_live_ prefix"));
    assert!(rest.len() >= 32, "key {key:?}: only {} random characters", rest.len());
    assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric()), "key {key:?}: not base62");
}

/// Every `kfa_live_…` token in `text`.
fn agent_keys_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("kfa_live_"))
        .map(str::to_string)
        .collect()
}

fn keys_list(dir: &Path) -> (Run, Vec<Value>) {
    let run = kifly(dir, &["keys", "list", "--json"]).ok();
    let list =
        run.json().as_array().cloned().unwrap_or_else(|| panic!("keys list is not an array: {}", run.stdout));
    (run, list)
}

// --- keys -------------------------------------------------------------------------------------------

#[test]
fn keys_create_prints_one_json_line_with_a_well_formed_key() {
    let dir = imported_dir();
    let run = kifly(dir.path(), &["keys", "create", "--name", "ci bot", "--json"]).ok();
    let lines: Vec<&str> = run.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected exactly one line: {}", run.stdout);
    let out: Value = serde_json::from_str(lines[0]).expect("JSON line");
    let obj = out.as_object().expect("object");
    let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["id", "key", "name", "scopes", "seller_handle"], "{out}");
    assert_agent_key(out["key"].as_str().expect("key"));
    assert!(out["id"].as_str().is_some_and(|id| !id.is_empty()), "{out}");
    assert_eq!(out["name"], "ci bot");
    assert_eq!(out["seller_handle"], Value::Null, "a key without --seller is a network key: {out}");
    let scopes: Vec<&str> =
        out["scopes"].as_array().expect("scopes").iter().filter_map(Value::as_str).collect();
    for scope in ["catalog:read", "checkout:write", "orders:read", "buyer:write", "feedback:write"] {
        assert!(scopes.contains(&scope), "default scopes lack {scope}: {out}");
    }
    assert_eq!(scopes.len(), 5, "{out}");

    // Two keys never share a secret.
    let again = kifly(dir.path(), &["keys", "create", "--name", "ci bot", "--json"]).ok().json();
    assert_ne!(again["key"], out["key"]);
    assert_ne!(again["id"], out["id"]);
}

#[test]
fn keys_create_with_seller_and_scopes() {
    let dir = imported_dir();
    let out = kifly(
        dir.path(),
        &[
            "keys",
            "create",
            "--name",
            "alpha reader",
            "--seller",
            "alpha-goods",
            "--scopes",
            "catalog:read",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_agent_key(out["key"].as_str().expect("key"));
    assert_eq!(out["seller_handle"], "alpha-goods", "{out}");
    assert_eq!(out["scopes"], json!(["catalog:read"]), "{out}");

    let out = kifly(
        dir.path(),
        &["keys", "create", "--name", "two", "--scopes", "catalog:read,checkout:write", "--json"],
    )
    .ok()
    .json();
    assert_eq!(out["scopes"], json!(["catalog:read", "checkout:write"]), "{out}");
}

#[test]
fn keys_create_rejects_unknown_scope_and_unknown_seller() {
    let dir = imported_dir();
    let err = kifly(
        dir.path(),
        &["keys", "create", "--name", "n", "--scopes", "catalog:read,catalog:write", "--json"],
    )
    .fails();
    assert!(err.contains("catalog:write"), "the error should name the unknown scope: {err}");

    let err =
        kifly(dir.path(), &["keys", "create", "--name", "n", "--seller", "no-such-seller", "--json"]).fails();
    assert!(err.contains("no-such-seller"), "the error should name the unknown seller: {err}");

    // Neither failure created a key.
    let (_, list) = keys_list(dir.path());
    assert!(list.is_empty(), "failed creations left keys behind: {list:?}");
}

#[test]
fn keys_list_hides_secrets_and_revoke_marks_the_key() {
    let dir = imported_dir();
    let a = kifly(dir.path(), &["keys", "create", "--name", "first", "--json"]).ok().json();
    let b = kifly(dir.path(), &["keys", "create", "--name", "second", "--seller", "beta-goods", "--json"])
        .ok()
        .json();
    let (a_key, b_key) = (a["key"].as_str().unwrap(), b["key"].as_str().unwrap());
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    let (run, list) = keys_list(dir.path());
    for secret in [a_key, b_key] {
        assert!(!run.all_output().contains(secret), "keys list --json leaked a key: {}", run.all_output());
        // Not even the random part without the prefix.
        assert!(!run.all_output().contains(&secret["kfa_live_".len()..]), "leaked: {}", run.all_output());
    }
    assert_eq!(list.len(), 2, "{list:?}");
    let entry = |list: &[Value], id: &str| {
        list.iter()
            .find(|k| k["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("key {id} not listed: {list:?}"))
    };
    let (ea, eb) = (entry(&list, a_id), entry(&list, b_id));
    assert_eq!(ea["name"], "first");
    assert_eq!(ea["seller_handle"], Value::Null);
    assert_eq!(eb["seller_handle"], "beta-goods");
    assert_eq!(ea["revoked_at"], Value::Null, "{ea}");
    assert_eq!(eb["revoked_at"], Value::Null, "{eb}");
    for e in [&ea, &eb] {
        assert!(e.get("key").is_none(), "the listing carries a key field: {e}");
    }
    // The display prefix, if shown, is a real prefix of the key and much shorter than it.
    if let Some(prefix) = ea["prefix"].as_str() {
        let visible = prefix.trim_end_matches('…');
        assert!(a_key.starts_with(visible) && visible.len() <= 16, "prefix {prefix:?} vs key");
    }

    // The text listing does not leak either.
    let text = kifly(dir.path(), &["keys", "list"]).ok();
    assert!(text.stdout.contains(a_id) && text.stdout.contains(b_id), "{}", text.stdout);
    for secret in [a_key, b_key] {
        assert!(!text.all_output().contains(secret), "keys list leaked a key: {}", text.all_output());
    }

    kifly(dir.path(), &["keys", "revoke", a_id]).ok();
    let (_, list) = keys_list(dir.path());
    let (ea, eb) = (entry(&list, a_id), entry(&list, b_id));
    let revoked_at = ea["revoked_at"].as_str().unwrap_or_else(|| panic!("revoked_at not set: {ea}"));
    assert!(
        time::OffsetDateTime::parse(revoked_at, &time::format_description::well_known::Rfc3339).is_ok(),
        "{ea}"
    );
    assert_eq!(eb["revoked_at"], Value::Null, "revoking one key touched another: {eb}");

    let err = kifly(dir.path(), &["keys", "revoke", "key_doesnotexist"]).fails();
    assert!(err.contains("key_doesnotexist"), "the error should name the id: {err}");
}

// --- catalog import ---------------------------------------------------------------------------------

#[test]
fn catalog_import_rejects_an_invalid_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    // First seller valid, second seller has a negative price.
    let mut bad = fixture_catalog();
    bad["sellers"][1]["products"][0]["variants"][0]["price_cents"] = json!(-5);
    let file = write_file(dir.path(), "bad.json", &serde_json::to_string_pretty(&bad).unwrap());
    let err = kifly(dir.path(), &["catalog", "import", file.to_str().unwrap()]).fails();
    assert!(
        err.contains("sellers[1].products[0].variants[0].price_cents"),
        "the error should name the field path: {err}"
    );

    // Nothing was written: the (valid) first seller does not exist.
    let err = kifly(dir.path(), &["keys", "create", "--name", "n", "--seller", "alpha-goods"]).fails();
    assert!(err.contains("alpha-goods"), "{err}");

    // A good import afterwards starts from an empty catalog and works.
    let good = write_file(dir.path(), "good.json", &fixture_catalog().to_string());
    let run = kifly(dir.path(), &["catalog", "import", good.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("imported 2 sellers, 2 products, 2 variants"), "{}", run.stdout);
    let key = kifly(dir.path(), &["keys", "create", "--name", "n", "--seller", "alpha-goods", "--json"])
        .ok()
        .json();
    assert_eq!(key["seller_handle"], "alpha-goods");
}

#[test]
fn catalog_import_of_malformed_json_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    // A valid first seller, then a syntax error (missing comma) on line 5.
    let text = "{\"sellers\": [\n\
        {\"handle\": \"alpha-goods\", \"name\": \"Alpha Goods\", \"tier\": \"purchasable\", \"products\": [\n\
          {\"handle\": \"alpha-mug\", \"title\": \"Alpha Mug\", \"variants\": [{\"sku\": \"A-1\", \"name\": \"D\", \"price_cents\": 100}]}]},\n\
        {\"handle\": \"beta-goods\", \"name\": \"Beta\", \"tier\": \"purchasable\",\n\
         \"delivery_fee_cents\": 5 \"products\": []}\n\
        ]}\n";
    let file = write_file(dir.path(), "broken.json", text);
    let err = kifly(dir.path(), &["catalog", "import", file.to_str().unwrap()]).fails();
    assert!(err.contains("line 5"), "the error should name the line: {err}");
    assert!(err.contains("broken.json"), "the error should name the file: {err}");
    let err = kifly(dir.path(), &["keys", "create", "--name", "n", "--seller", "alpha-goods"]).fails();
    assert!(err.contains("alpha-goods"), "{err}");

    // A type error names the field path.
    let mut typed = fixture_catalog();
    typed["sellers"][1]["products"][0]["variants"][0]["price_cents"] = json!("forty-five");
    let file = write_file(dir.path(), "typed.json", &typed.to_string());
    let err = kifly(dir.path(), &["catalog", "import", file.to_str().unwrap()]).fails();
    assert!(err.contains("sellers[1].products[0].variants[0].price_cents"), "{err}");
    let err = kifly(dir.path(), &["keys", "create", "--name", "n", "--seller", "alpha-goods"]).fails();
    assert!(err.contains("alpha-goods"), "{err}");

    // A missing file fails too.
    let err = kifly(dir.path(), &["catalog", "import", "does-not-exist.json"]).fails();
    assert!(err.contains("does-not-exist.json"), "{err}");
}

// --- limits -----------------------------------------------------------------------------------------

#[test]
fn limits_get_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let got = kifly(dir.path(), &["limits", "get"]).ok().json();
    assert_eq!(
        got,
        json!({"max_item_quantity": 20, "max_cart_total_cents": 100000, "max_cart_total_usd": "1000.00"}),
        "defaults"
    );

    let set = kifly(dir.path(), &["limits", "set", "max_item_quantity=7"]).ok().json();
    assert_eq!(set["max_item_quantity"], 7, "{set}");
    let got = kifly(dir.path(), &["limits", "get"]).ok().json();
    assert_eq!(got["max_item_quantity"], 7, "{got}");
    assert_eq!(got["max_cart_total_cents"], 100000, "{got}");

    let got = kifly(dir.path(), &["limits", "set", "max_cart_total_cents=2550"]).ok().json();
    assert_eq!(
        got,
        json!({"max_item_quantity": 7, "max_cart_total_cents": 2550, "max_cart_total_usd": "25.50"})
    );

    for (bad, names) in [
        ("max_item_quantity=0", "max_item_quantity"),
        ("max_item_quantity=-3", "max_item_quantity"),
        ("max_item_quantity=abc", "max_item_quantity"),
        ("nope=3", "nope"),
        ("x", "x"),
    ] {
        let err = kifly(dir.path(), &["limits", "set", bad]).fails();
        assert!(err.contains(names), "`limits set {bad}`: the error should name {names:?}: {err}");
    }
    // A bad setting among good ones changes nothing.
    let err = kifly(dir.path(), &["limits", "set", "max_item_quantity=9", "nope=3"]).fails();
    assert!(err.contains("nope"), "{err}");
    let got = kifly(dir.path(), &["limits", "get"]).ok().json();
    assert_eq!(
        got,
        json!({"max_item_quantity": 7, "max_cart_total_cents": 2550, "max_cart_total_usd": "25.50"})
    );
    // `limits set` with no setting is a usage error.
    kifly(dir.path(), &["limits", "set"]).fails();
}

// --- config -----------------------------------------------------------------------------------------

#[test]
fn config_prints_effective_toml_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let run = kifly(dir.path(), &["config"]).ok();
    let parsed: toml::Value =
        toml::from_str(&run.stdout).unwrap_or_else(|e| panic!("not TOML ({e}):\n{}", run.stdout));
    assert_eq!(parsed["data_dir"].as_str(), Some(dir.path().to_str().unwrap()), "{}", run.stdout);
    assert_eq!(parsed["bind"].as_str(), Some("127.0.0.1:8080"), "{}", run.stdout);

    let secret = "s3cr3t-value-that-is-long-enough-0123456789";
    let password = "hunter2-db-password";
    let run = kifly_with_env(
        dir.path(),
        &["config"],
        &[
            ("KIFLY_SECRET_KEY", secret),
            ("KIFLY_DATABASE_URL", &format!("postgres://kifly:{password}@db:5432/kifly")),
        ],
    )
    .ok();
    assert!(!run.all_output().contains(secret), "the secret key is printed: {}", run.stdout);
    assert!(!run.all_output().contains(password), "the database password is printed: {}", run.stdout);
    let parsed: toml::Value =
        toml::from_str(&run.stdout).unwrap_or_else(|e| panic!("not TOML ({e}):\n{}", run.stdout));
    assert_eq!(parsed["secret_key"].as_str(), Some("***"), "{}", run.stdout);
    assert!(
        parsed["database_url"].as_str().is_some_and(|u| u.contains("***") && u.contains("db:5432")),
        "{}",
        run.stdout
    );

    // Env overrides the defaults, flags override env.
    let run = kifly_with_env(dir.path(), &["config"], &[("KIFLY_RATE_LIMIT_AGENT", "off")]).ok();
    let parsed: toml::Value = toml::from_str(&run.stdout).unwrap();
    assert_eq!(parsed["rate_limit_agent"].as_str(), Some("off"), "{}", run.stdout);
    let other = dir.path().join("elsewhere");
    let run = kifly_with_env(dir.path(), &["config"], &[("KIFLY_DATA_DIR", other.to_str().unwrap())]).ok();
    let parsed: toml::Value = toml::from_str(&run.stdout).unwrap();
    assert_eq!(
        parsed["data_dir"].as_str(),
        Some(dir.path().to_str().unwrap()),
        "--data-dir must win over env"
    );
    let run = Run::from(
        bare_command(dir.path()).env("KIFLY_DATA_DIR", &other).arg("config").output().expect("run kifly"),
    )
    .ok();
    let parsed: toml::Value = toml::from_str(&run.stdout).unwrap();
    assert_eq!(
        parsed["data_dir"].as_str(),
        Some(other.to_str().unwrap()),
        "KIFLY_DATA_DIR ignored: {}",
        run.stdout
    );
}

#[test]
fn kifly_log_is_a_log_filter_not_a_config_key() {
    // `KIFLY_LOG` is the documented log filter; it must not be rejected as an unknown setting.
    let dir = tempfile::tempdir().unwrap();
    for filter in ["warn", "debug", "info,sqlx=warn"] {
        let run = kifly_with_env(dir.path(), &["limits", "get"], &[("KIFLY_LOG", filter)]);
        assert!(run.status.success(), "KIFLY_LOG={filter} broke the CLI: {}", run.stderr);
    }
}

/// Arguments, environment, the key the error must name, and the bad value it should quote (if not
/// a secret).
type BadSetting =
    (&'static [&'static str], &'static [(&'static str, &'static str)], &'static str, Option<&'static str>);

#[test]
fn bad_settings_fail_with_exit_code_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [BadSetting; 5] = [
        (&["config"], &[("KIFLY_RATE_LIMIT_AGENT", "banana")], "rate_limit_agent", Some("banana")),
        (&["serve", "--bind", "nonsense"], &[], "bind", Some("nonsense")),
        (&["serve"], &[("KIFLY_BIND", "nowhere")], "bind", Some("nowhere")),
        (&["config"], &[("KIFLY_PUBLIC_URL", "ftp://x")], "public_url", Some("ftp://x")),
        (&["config"], &[("KIFLY_SECRET_KEY", "short-secret")], "secret_key", None),
    ];
    for (args, env, key, value) in cases {
        let run = kifly_with_env(dir.path(), args, env);
        assert_eq!(run.status.code(), Some(2), "{args:?} {env:?}: stderr {}", run.stderr);
        let err = run.stderr.to_lowercase();
        assert!(err.contains(key), "{args:?} {env:?}: message should name {key}: {}", run.stderr);
        // The message is about this setting, not some other failure that merely lists every key.
        assert!(
            !err.contains("unknown field"),
            "{args:?} {env:?}: failed for another reason: {}",
            run.stderr
        );
        if let Some(value) = value {
            assert!(
                run.stderr.contains(value),
                "{args:?} {env:?}: message should quote {value:?}: {}",
                run.stderr
            );
        }
        assert!(!run.stdout.contains("listening"), "{}", run.stdout);
    }
    // The short secret is not echoed back.
    let run = kifly_with_env(dir.path(), &["config"], &[("KIFLY_SECRET_KEY", "short-secret")]);
    assert!(!run.all_output().contains("short-secret"), "{}", run.all_output());
    // Nothing was created for a failed start.
    assert!(!dir.path().join("kifly.db").exists(), "a bad config still opened the database");
}

// --- serve ------------------------------------------------------------------------------------------

#[tokio::test]
async fn serve_demo_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--demo", "--bind", "127.0.0.1:0"]);

    // The real port, not 0.
    let addr =
        server.base.strip_prefix("http://").unwrap_or_else(|| panic!("listening line: {}", server.base));
    let addr: std::net::SocketAddr =
        addr.parse().unwrap_or_else(|e| panic!("listening address {addr:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "the listening line must show the real port");

    // Two demo keys, printed before the listening line.
    let banner = server.banner.join("\n");
    let keys = agent_keys_in(&banner);
    assert_eq!(keys.len(), 2, "expected two demo keys in:\n{banner}");
    keys.iter().for_each(|k| assert_agent_key(k));
    assert_ne!(keys[0], keys[1]);
    assert!(
        !dir.path().join("kifly-data").exists() && dir.path().join("kifly.db").exists(),
        "data dir not honoured"
    );

    let client = http_client();
    let (status, body) = get_json(&client, &server.url("/healthz"), None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = get_json(&client, &server.url("/readyz"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], "sqlite", "{body}");
    let limits_url = server.url("/api/agent/platform/limits");
    let (status, body) = get_json(&client, &limits_url, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"max_item_quantity": 20, "max_cart_total_cents": 100000, "max_cart_total_usd": "1000.00"})
    );

    // The printed keys work.
    for key in &keys {
        let (status, body) = get_json(&client, &server.url("/api/agent/products?limit=1"), Some(key)).await;
        assert_eq!(status, 200, "a printed demo key was refused: {body}");
    }

    // `kifly limits set` on the same data dir, while the server runs: seen within 5 s.
    let run = kifly(dir.path(), &["limits", "set", "max_item_quantity=7"]).ok();
    assert_eq!(run.json()["max_item_quantity"], 7);
    let seen = poll_until(Duration::from_secs(5), || {
        let (client, url) = (client.clone(), limits_url.clone());
        async move { get_json(&client, &url, None).await.1["max_item_quantity"] == 7 }
    })
    .await;
    assert!(seen.is_some(), "the running server did not see max_item_quantity=7 within 5 s");

    // `kifly keys revoke` while the server runs: the key stops working within 5 s (§3).
    let (_, list) = keys_list(dir.path());
    let network = list.iter().find(|k| k["seller_handle"].is_null()).expect("network demo key listed");
    let network_key = keys
        .iter()
        .find(|k| k.starts_with(network["prefix"].as_str().expect("prefix").trim_end_matches('…')))
        .expect("network key printed")
        .clone();
    kifly(dir.path(), &["keys", "revoke", network["id"].as_str().unwrap()]).ok();
    let products_url = server.url("/api/agent/products?limit=1");
    let revoked = poll_until(Duration::from_secs(5), || {
        let (client, url, key) = (client.clone(), products_url.clone(), network_key.clone());
        async move {
            let (status, body) = get_json(&client, &url, Some(&key)).await;
            status == 401 && body["error"] == "api_key_revoked"
        }
    })
    .await;
    assert!(revoked.is_some(), "a revoked key still worked 5 s after `kifly keys revoke`");

    // Graceful shutdown on SIGTERM.
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "kifly serve exited with {status} after SIGTERM; stderr: {}", server.stderr());
    assert!(client.get(server.url("/healthz")).send().await.is_err(), "still answering after exit");
    drop(server);

    // A second `serve --demo` on the same data dir prints no keys, and the surviving key still works
    // (the server secret persisted).
    let server = Server::start(dir.path(), &["--demo", "--bind", "127.0.0.1:0"]);
    let banner = server.banner.join("\n");
    assert!(agent_keys_in(&banner).is_empty(), "demo keys printed again:\n{banner}");
    let seller_key = keys.iter().find(|k| **k != network_key).unwrap();
    let (status, body) =
        get_json(&client, &server.url("/api/agent/products?limit=1"), Some(seller_key)).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = get_json(&client, &server.url("/api/agent/platform/limits"), None).await;
    assert_eq!(body["max_item_quantity"], 7, "limits did not persist: {body}");
    let (status, body) =
        get_json(&client, &server.url("/api/agent/products?limit=1"), Some(&network_key)).await;
    assert_eq!((status, &body["error"]), (401, &json!("api_key_revoked")), "{body}");
    let (_, list) = keys_list(dir.path());
    assert_eq!(list.len(), 2, "the second start created keys: {list:?}");
}

#[tokio::test]
async fn serve_without_demo_logs_json_with_request_ids_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with_env(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--log-format", "json"],
        &[("KIFLY_LOG", "debug")],
    );
    assert!(agent_keys_in(&server.banner.join("\n")).is_empty(), "{:?}", server.banner);
    let client = http_client();
    let (status, _) = get_json(&client, &server.url("/readyz"), None).await;
    assert_eq!(status, 200);

    // A well-formed but unknown key, sent both ways, with a client request id.
    let bogus = format!("kfa_live_{}", "Zq7".repeat(14));
    let trace = "trace-log-check-0001";
    for header in ["authorization", "x-api-key"] {
        let value = if header == "authorization" { format!("Bearer {bogus}") } else { bogus.clone() };
        let response = client
            .get(server.url("/api/agent/products"))
            .header(header, value)
            .header("x-request-id", trace)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(response.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some(trace));
    }
    let (_, list) = keys_list(dir.path());
    assert!(list.is_empty(), "serve without --demo created keys: {list:?}");

    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit {status}; stderr: {}", server.stderr());
    // The stderr reader may lag the exit a little.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !server.stderr().contains(trace) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = server.stderr();
    assert!(logs.contains(trace), "no log line carries the request id:\n{logs}");
    assert!(!logs.contains(&bogus[9..]), "a full token was logged:\n{logs}");
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "--log-format json printed a non-JSON line: {line}"
        );
    }
}
