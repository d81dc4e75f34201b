//! `highway gatekeeper`: the registry service.
//!
//! Every flag can also come from an environment variable, `HIGHWAY_GATEKEEPER_` and the
//! flag's name in upper case (`--redis-replica` ↔ `HIGHWAY_GATEKEEPER_REDIS_REPLICA`), as a
//! Kubernetes ConfigMap sets them (deploy/k8s). A flag given on the command line wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use highway_gatekeeper::admission::IpBlock;
use highway_gatekeeper::config::ClaimedAddrs;
use highway_gatekeeper::server::now_ms;
use highway_gatekeeper::{App, EmbeddedStore, GatekeeperConfig, RedisOptions, RedisStore};
use highway_serve::{Limits, Tls};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve the HTTP API on, e.g. 127.0.0.1:7700 or [::]:7700.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_LISTEN",
        default_value = "127.0.0.1:7700"
    )]
    listen: SocketAddr,
    /// Journal file for the embedded store, so a restart loses no registration.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_STORE",
        value_name = "PATH",
        conflicts_with = "redis"
    )]
    store: Option<PathBuf>,
    /// Keep registrations in Redis (writes go here), e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "HIGHWAY_GATEKEEPER_REDIS", value_name = "URL")]
    redis: Option<String>,
    /// A Redis replica of --redis to read from.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_REDIS_REPLICA",
        value_name = "URL",
        requires = "redis"
    )]
    redis_replica: Option<String>,
    /// Prefix of every Redis key.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_REDIS_PREFIX",
        default_value = "hw:",
        requires = "redis"
    )]
    redis_prefix: String,
    /// How often peers send a status.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_STATUS_INTERVAL",
        value_parser = humantime::parse_duration,
        default_value = "5s"
    )]
    status_interval: Duration,
    /// Missed statuses after which a peer expires.
    #[arg(long, env = "HIGHWAY_GATEKEEPER_MISSED_STATUSES", default_value_t = 3)]
    missed_statuses: u32,
    /// Lifetime of lease tokens.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_LEASE_TTL",
        value_parser = humantime::parse_duration,
        default_value = "10m"
    )]
    lease_ttl: Duration,
    /// Largest accepted difference between a signed request's timestamp and this clock.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_MAX_CLOCK_SKEW",
        value_parser = humantime::parse_duration,
        default_value = "30s"
    )]
    max_clock_skew: Duration,
    /// How long a reported peer stays registered without sending a status.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_REPORT_GRACE",
        value_parser = humantime::parse_duration,
        default_value = "10s"
    )]
    report_grace: Duration,
    /// How often expired peers are purged.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_SWEEP_INTERVAL",
        value_parser = humantime::parse_duration,
        default_value = "1s"
    )]
    sweep_interval: Duration,
    /// Share (0 to 1) of each join answer picked at random among all live peers; the
    /// rest are the least loaded. Random links keep the overlay's paths short.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_RANDOM_CANDIDATES",
        value_name = "F",
        default_value_t = 0.5
    )]
    random_candidates: f64,
    /// Distinct neighbours that must report a live peer (within one expiry window) before
    /// it is hidden from join answers. A report counts only when reporter and target list
    /// each other in their last statuses.
    #[arg(long, env = "HIGHWAY_GATEKEEPER_REPORT_QUORUM", default_value_t = 2)]
    report_quorum: u32,
    /// Most live registrations from one network (see --ipv4-prefix, --ipv6-prefix).
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_MAX_PEERS_PER_PREFIX",
        value_name = "N",
        default_value_t = 256
    )]
    max_peers_per_prefix: u32,
    /// Most joins from one network per minute.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_MAX_JOINS_PER_PREFIX",
        value_name = "N",
        default_value_t = 600
    )]
    max_joins_per_prefix: u32,
    /// Prefix length that makes one IPv4 network for the per-network limits and answers.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_IPV4_PREFIX",
        value_name = "BITS",
        default_value_t = 24
    )]
    ipv4_prefix: u8,
    /// Prefix length that makes one IPv6 network for the per-network limits and answers.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_IPV6_PREFIX",
        value_name = "BITS",
        default_value_t = 48
    )]
    ipv6_prefix: u8,
    /// A reverse proxy (address, or block such as 10.0.0.0/8) whose X-Forwarded-For header
    /// tells the client's address (repeat the flag, or comma-separate in the environment
    /// variable, for several).
    #[arg(
        long = "trusted-proxy",
        env = "HIGHWAY_GATEKEEPER_TRUSTED_PROXY",
        value_name = "IP[/BITS]",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<IpBlock>,
    /// Which addresses peers may publish: match-source (their own IP, as this Gatekeeper
    /// sees it; loopback from loopback) or any (any dialable address).
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_CLAIMED_ADDRS",
        value_name = "RULE",
        default_value = "match-source"
    )]
    claimed_addrs: ClaimedAddrs,
    /// Open connections at most; beyond, a new connection gets 503 and is closed.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = Limits::gatekeeper().max_connections
    )]
    max_connections: usize,
    /// Open connections at most from one IPv4 address or IPv6 /64. Behind a proxy
    /// (nginx, a load balancer) every connection comes from the proxy: set this to
    /// --max-connections there.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        default_value_t = Limits::gatekeeper().max_per_source
    )]
    max_connections_per_ip: usize,
    /// Time a client has to send a request's headers, and then its body; also how long
    /// an idle kept-alive connection stays open. A trickle does not extend it.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_HEADER_TIMEOUT",
        value_parser = humantime::parse_duration,
        default_value = "10s"
    )]
    header_timeout: Duration,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    /// Without it the API is plain HTTP, for a TLS-terminating proxy or a private network.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "HIGHWAY_GATEKEEPER_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = GatekeeperConfig {
        status_interval: args.status_interval,
        missed_statuses: args.missed_statuses,
        lease_ttl: args.lease_ttl,
        max_clock_skew: args.max_clock_skew,
        report_grace: args.report_grace,
        sweep_interval: args.sweep_interval,
        random_candidates: args.random_candidates,
        report_quorum: args.report_quorum,
        max_peers_per_prefix: args.max_peers_per_prefix,
        max_joins_per_prefix: args.max_joins_per_prefix,
        ipv4_prefix: args.ipv4_prefix,
        ipv6_prefix: args.ipv6_prefix,
        trusted_proxies: args.trusted_proxies,
        claimed_addrs: args.claimed_addrs,
    };
    config.validate().context("invalid Gatekeeper settings")?;
    let limits = Limits {
        max_connections: args.max_connections,
        max_per_source: args.max_connections_per_ip,
        header_timeout: args.header_timeout,
        ..Limits::gatekeeper()
    };
    limits.validate().context(
        "invalid connection limits (--max-connections, --max-connections-per-ip, --header-timeout)",
    )?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key)?),
        _ => None,
    };
    let listen = args.listen;
    let serve_err = || format!("cannot serve on {listen}; is another process using that port?");
    match args.redis {
        Some(url) => {
            let options = RedisOptions {
                prefix: args.redis_prefix,
                ..Default::default()
            };
            let store = RedisStore::new(&url, args.redis_replica.as_deref(), options)?;
            highway_gatekeeper::serve_until_signal_tls(
                listen,
                App::with_limits(store, config, limits),
                tls,
            )
            .await
            .with_context(serve_err)
        }
        None => {
            let store = match &args.store {
                Some(path) => {
                    let now = now_ms();
                    let deadline = now + config.expires_after().as_millis() as u64;
                    let tombstone = now + config.tombstone_ttl().as_millis() as u64;
                    EmbeddedStore::open(path, now, deadline, tombstone)?
                }
                None => EmbeddedStore::in_memory(),
            };
            highway_gatekeeper::serve_until_signal_tls(
                listen,
                App::with_limits(store, config, limits),
                tls,
            )
            .await
            .with_context(serve_err)
        }
    }
}
