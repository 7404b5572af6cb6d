//! The `kifly` command. Every subcommand reads the same configuration (so the same data dir or
//! database) as the server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kifly_core::catalog::CatalogFile;
use kifly_core::scope;
use serde_json::json;

use crate::app::{App, load_or_create_secret, now_ms, open_store, rfc3339};
use crate::config::{Config, FlagOverrides};

#[derive(Parser)]
#[command(
    name = "kifly",
    version,
    about = "Agentic-commerce server: catalog, carts and checkout for AI agents"
)]
struct Cli {
    /// Configuration file (default: ./kifly.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder for the embedded database and local state.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite://… or postgres://…).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage agent API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Load sellers and products.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Read or change platform limits at run time.
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// Fulfil orders: ship and deliver.
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Buyer accounts.
    #[command(subcommand)]
    Buyers(BuyersCommand),
    /// Agent feedback and buyers' feature requests.
    #[command(subcommand)]
    Feedback(ListCommand),
    /// The mail outbox (one-time codes): what was sent, what waits, what failed.
    #[command(subcommand)]
    Mail(ListCommand),
    /// Print the effective configuration (secrets redacted).
    Config,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (HOST:PORT; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Load the demo catalog and print demo keys on a fresh data dir.
    #[arg(long)]
    demo: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; the plaintext is shown once.
    Create {
        #[arg(long)]
        name: String,
        /// Bind the key to one seller (seller-scoped key).
        #[arg(long, value_name = "HANDLE")]
        seller: Option<String>,
        /// Comma-separated scopes (default: all).
        #[arg(long, default_value = "")]
        scopes: String,
        #[arg(long)]
        json: bool,
    },
    /// List keys (no secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum BuyersCommand {
    /// Revoke every buyer token of an account (the buyer verifies again to get a new one).
    RevokeTokens { email: String },
}

#[derive(Subcommand)]
enum ListCommand {
    /// Newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OrdersCommand {
    /// Mark a paid order shipped, with tracking.
    Ship {
        order_id: String,
        #[arg(long)]
        carrier: Option<String>,
        #[arg(long)]
        tracking_number: Option<String>,
        #[arg(long)]
        tracking_url: Option<String>,
    },
    /// Mark a paid or shipped order delivered.
    Deliver { order_id: String },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Upsert sellers and products from a JSON file; a bad file is rejected whole.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum LimitsCommand {
    /// Print the current limits as JSON.
    Get,
    /// Change limits, e.g. `kifly limits set max_item_quantity=10`.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let flags = FlagOverrides {
        bind: match &cli.command {
            Command::Serve(args) => args.bind.clone(),
            _ => None,
        },
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        log_format: cli.log_format.clone(),
    };
    let config = match Config::load(cli.config.as_deref(), &flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KIFLY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    match command {
        Command::Config => {
            print!("{config}");
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Serve(args) => serve(config, args.demo).await,
        Command::Buyers(BuyersCommand::RevokeTokens { email }) => {
            let store = open_store(&config).await?;
            let email = email.trim().to_lowercase();
            let n = store.revoke_buyer_tokens(&email, now_ms()).await.map_err(|e| e.to_string())?;
            println!("revoked {n} buyer token(s) of {email}");
            Ok(())
        }
        Command::Feedback(ListCommand::List { limit, json }) => {
            let store = open_store(&config).await?;
            for entry in store.list_feedback(limit).await.map_err(|e| e.to_string())? {
                if json {
                    let content: serde_json::Value = serde_json::from_str(&entry.content).unwrap_or_default();
                    let line = json!({"id": entry.id, "kind": entry.kind, "category": entry.category,
                        "severity": entry.severity, "api_key_id": entry.api_key_id, "buyer_id": entry.buyer_id,
                        "created_at": crate::app::rfc3339(entry.created_at), "content": content});
                    println!("{line}");
                } else {
                    println!(
                        "{}  {}  {}/{}  {}",
                        crate::app::rfc3339(entry.created_at),
                        entry.kind,
                        entry.category,
                        entry.severity,
                        entry.content
                    );
                }
            }
            Ok(())
        }
        Command::Mail(ListCommand::List { limit, json }) => {
            let store = open_store(&config).await?;
            for mail in store.list_mail(limit).await.map_err(|e| e.to_string())? {
                if json {
                    let line = json!({"id": mail.id, "to": mail.recipient, "subject": mail.subject,
                        "status": mail.status, "attempts": mail.attempts, "last_error": mail.last_error});
                    println!("{line}");
                } else {
                    println!("{}  {}  {}  {}", mail.id, mail.status, mail.recipient, mail.subject);
                }
            }
            Ok(())
        }
        Command::Orders(cmd) => {
            let store = open_store(&config).await?;
            let order = match cmd {
                OrdersCommand::Ship { order_id, carrier, tracking_number, tracking_url } => {
                    let shipment = kifly_store::Shipment { carrier, tracking_number, tracking_url };
                    crate::service::checkout::ship_order(store.as_ref(), &order_id, shipment).await?
                }
                OrdersCommand::Deliver { order_id } => {
                    crate::service::checkout::deliver_order(store.as_ref(), &order_id).await?
                }
            };
            println!("order {} is {}", order.id, order.status.as_str());
            Ok(())
        }
        Command::Keys(cmd) => keys(config, cmd).await,
        Command::Catalog(CatalogCommand::Import { file }) => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let catalog = CatalogFile::parse(&text)
                .map_err(|e| format!("{}: {e} (nothing imported)", file.display()))?;
            let store = open_store(&config).await?;
            let s = store.import_catalog(&catalog, now_ms()).await.map_err(|e| e.to_string())?;
            println!("imported {} sellers, {} products, {} variants", s.sellers, s.products, s.variants);
            Ok(())
        }
        Command::Limits(cmd) => {
            let store = open_store(&config).await?;
            let mut limits = store.get_limits().await.map_err(|e| e.to_string())?;
            if let LimitsCommand::Set { settings } = cmd {
                for setting in settings {
                    let (key, value) =
                        setting.split_once('=').ok_or_else(|| format!("{setting:?}: expected KEY=VALUE"))?;
                    limits.apply(key.trim(), value).map_err(|e| e.to_string())?;
                }
                store.set_limits(&limits, now_ms()).await.map_err(|e| e.to_string())?;
            }
            let view = crate::http::limits_view(limits);
            println!("{}", serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?);
            Ok(())
        }
    }
}

async fn serve(mut config: Config, demo: bool) -> Result<(), String> {
    let store = open_store(&config).await?;
    let secret = load_or_create_secret(&config)?;
    if demo {
        match crate::demo::seed(store.as_ref(), &secret).await? {
            Some(lines) => lines.iter().for_each(|l| println!("{l}")),
            None => println!(
                "demo data already present in {} (keys were shown when it was created; `kifly keys create` makes more)",
                config.data_dir.display()
            ),
        }
    }
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The payment clients reach the built-in sandbox on the port actually bound (`--bind …:0`).
    config.bind = addr.to_string();
    if demo {
        config.payments_sandbox = true;
    }
    let app = App::new(store, config, secret)?;
    println!("kifly listening on http://{addr}");
    crate::server::serve(app, listener).await.map_err(|e| e.to_string())
}

async fn keys(config: Config, cmd: KeysCommand) -> Result<(), String> {
    let store = open_store(&config).await?;
    let secret = load_or_create_secret(&config)?;
    match cmd {
        KeysCommand::Create { name, seller, scopes, json } => {
            let scopes = scope::parse_list(&scopes).map_err(|e| format!("--scopes: {e}"))?;
            let (key, plaintext) =
                crate::service::keys::create_key(store.as_ref(), &secret, &name, seller.as_deref(), scopes)
                    .await?;
            let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
            if json {
                let out = json!({"id": key.id, "key": plaintext, "name": key.name, "seller_handle": key.seller_handle, "scopes": scopes});
                println!("{out}");
            } else {
                println!("created key {} ({})", key.id, key.name);
                println!(
                    "  seller: {}",
                    key.seller_handle.as_deref().unwrap_or("(network key: all sellers)")
                );
                println!("  scopes: {}", scopes.join(","));
                println!("  key:    {plaintext}");
                println!("store it now: it is not shown again");
            }
        }
        KeysCommand::List { json } => {
            let keys = store.list_api_keys().await.map_err(|e| e.to_string())?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.id, "name": k.name, "prefix": k.display_prefix, "seller_handle": k.seller_handle,
                            "scopes": k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                            "created_at": rfc3339(k.created_at), "revoked_at": k.revoked_at.map(rfc3339),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                for k in keys {
                    let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                    let seller = k.seller_handle.as_deref().unwrap_or("*");
                    println!("{}  {}  {}  seller={}  {}", k.id, k.display_prefix, state, seller, k.name);
                }
            }
        }
        KeysCommand::Revoke { id } => {
            if store.revoke_api_key(&id, now_ms()).await.map_err(|e| e.to_string())? {
                println!("revoked {id}");
            } else {
                return Err(format!("no key with id {id:?}"));
            }
        }
    }
    Ok(())
}
