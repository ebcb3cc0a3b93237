//! Where the fleet's Redis is: one server (`redis://`, `rediss://` with
//! TLS) or a Sentinel-watched master
//! (`redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER`), with the password
//! from the URL or given apart (an environment variable or a file).
//!
//! Invariant: a password never leaves this module except inside the
//! redis client's connection settings; [`redact`] is the only form of a
//! URL that may be logged or shown.

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo};
use thiserror::Error;

/// The scheme of a Sentinel URL.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// Why a `--fleet` URL cannot work.
#[derive(Debug, Error)]
pub enum EndpointError {
    /// Not a URL redis understands (the URL is shown redacted).
    #[error("--fleet {url:?} is not a redis://, rediss:// or redis+sentinel:// URL: {reason}")]
    Url {
        /// The URL, password replaced.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How to reach the fleet's Redis master.
pub enum Endpoint {
    /// One server.
    Direct(redis::Client),
    /// The master the Sentinels name, asked again on every connect (a
    /// failover moves it).
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Direct(_) => f.write_str("Endpoint::Direct"),
            Endpoint::Sentinel(_) => f.write_str("Endpoint::Sentinel"),
        }
    }
}

impl Endpoint {
    /// Parses `url`; `password`, when given, replaces the URL's; `ca`
    /// (PEM), when given, is the only root a `rediss://` server's
    /// certificate is checked against (else the system's roots).
    pub fn open(
        url: &str,
        password: Option<&str>,
        ca: Option<&[u8]>,
    ) -> Result<Endpoint, EndpointError> {
        let invalid = |reason: String| EndpointError::Url {
            url: redact(url),
            reason,
        };
        if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
            return sentinel(rest, password).map_err(invalid);
        }
        let info = url
            .into_connection_info()
            .map_err(|e| invalid(e.to_string()))?;
        let info = match password {
            Some(password) => {
                let settings = info.redis_settings().clone().set_password(password);
                info.set_redis_settings(settings)
            }
            None => info,
        };
        let client = match ca {
            Some(ca) => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                };
                redis::Client::build_with_tls(info, certificates)
            }
            None => redis::Client::open(info),
        };
        client
            .map(Endpoint::Direct)
            .map_err(|e| invalid(e.to_string()))
    }

    /// A client for the current master.
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Endpoint::Direct(client) => Ok(client.clone()),
            Endpoint::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}

/// `[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER`.
fn sentinel(rest: &str, password: Option<&str>) -> Result<Endpoint, String> {
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let url_password = auth.and_then(|a| a.split_once(':')).map(|(_, p)| p);
    let (hosts, master) = rest
        .split_once('/')
        .ok_or("no /MASTER after the sentinel addresses")?;
    let master = master.split('?').next().unwrap_or_default();
    if master.is_empty() {
        return Err("no master name after the sentinel addresses".into());
    }
    let mut addrs = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = host
            .rsplit_once(':')
            .ok_or_else(|| format!("sentinel address {host:?} has no :PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("sentinel address {host:?} has no valid port"))?;
        let name = name.trim_start_matches('[').trim_end_matches(']');
        addrs.push(ConnectionAddr::Tcp(name.to_owned(), port));
    }
    let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
        .map_err(|e| e.to_string())?;
    if let Some(password) = password.or(url_password).filter(|p| !p.is_empty()) {
        builder = builder.set_client_to_redis_password(password);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    Ok(Endpoint::Sentinel(tokio::sync::Mutex::new(client)))
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_every_password_and_keeps_the_rest() {
        assert_eq!(
            redact("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("rediss://user:p@ss:w@host:1"),
            "rediss://user:***@host:1"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis+sentinel://:s3cret@a:1,b:2/main"),
            "redis+sentinel://:***@a:1,b:2/main"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn urls_of_each_kind_open_and_errors_never_show_the_password() {
        assert!(matches!(
            Endpoint::open("redis://127.0.0.1:1", None, None),
            Ok(Endpoint::Direct(_))
        ));
        assert!(matches!(
            Endpoint::open("rediss://127.0.0.1:1", Some("pw"), None),
            Ok(Endpoint::Direct(_))
        ));
        assert!(matches!(
            Endpoint::open(
                "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/main",
                None,
                None
            ),
            Ok(Endpoint::Sentinel(_))
        ));
        for bad in [
            "http://:hunter2@host:1",
            "redis+sentinel://:hunter2@host:1",
            "redis+sentinel://:hunter2@host/main",
            "redis+sentinel://:hunter2@host:1/",
        ] {
            let error = Endpoint::open(bad, None, None).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
