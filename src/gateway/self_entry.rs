//! The gateway's own presence entry (docs/protocol.md §5.1, "Self entry").

use crate::presence::Entry;

/// This build's version, as the self entry and `hello-ok` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Facts about this machine that the self entry reports.
#[derive(Debug, Clone)]
pub struct SelfInfo {
    /// The hostname.
    pub host: String,
    /// The primary non-loopback IPv4 address, if any.
    pub ip: Option<String>,
    /// `linux 6.1.0`.
    pub platform: String,
    /// `Linux`.
    pub device_family: String,
    /// The CPU architecture.
    pub arch: String,
    /// A UUID made at start; the self entry's reserved key.
    pub instance_id: String,
}

impl SelfInfo {
    /// Reads the facts from the running system.
    pub fn detect() -> SelfInfo {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let host = if host.trim().is_empty() {
            "localhost".to_owned()
        } else {
            host
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let os = std::env::consts::OS;
        let platform = if release.is_empty() {
            os.to_owned()
        } else {
            format!("{os} {release}")
        };
        SelfInfo {
            host,
            ip: primary_ipv4(),
            platform,
            device_family: family(os),
            arch: std::env::consts::ARCH.to_owned(),
            instance_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The entry the store starts with.
    pub fn entry(&self) -> Entry {
        let address = self
            .ip
            .as_deref()
            .map(|ip| format!(" ({ip})"))
            .unwrap_or_default();
        Entry {
            instance_id: Some(self.instance_id.clone()),
            host: Some(self.host.clone()),
            ip: self.ip.clone(),
            version: Some(VERSION.to_owned()),
            platform: Some(self.platform.clone()),
            device_family: Some(self.device_family.clone()),
            model_identifier: Some(self.arch.clone()),
            mode: Some("gateway".to_owned()),
            reason: Some("self".to_owned()),
            text: format!(
                "Gateway: {}{address} · app {VERSION} · mode gateway · reason self",
                self.host
            ),
            ..Entry::default()
        }
    }
}

fn family(os: &str) -> String {
    match os {
        "linux" => "Linux",
        "macos" => "Mac",
        "windows" => "Windows",
        "freebsd" => "FreeBSD",
        other => other,
    }
    .to_owned()
}

/// The first non-loopback IPv4 address of an interface that is up.
fn primary_ipv4() -> Option<String> {
    let interfaces = if_addrs::get_if_addrs().ok()?;
    interfaces
        .iter()
        .filter(|i| !i.is_loopback())
        .find_map(|i| match i.ip() {
            std::net::IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_link_local() => {
                Some(v4.to_string())
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_entry_describes_the_gateway() {
        let info = SelfInfo {
            host: "gw".into(),
            ip: Some("192.0.2.1".into()),
            platform: "linux 6.1.0".into(),
            device_family: "Linux".into(),
            arch: "x86_64".into(),
            instance_id: "id-1".into(),
        };
        let e = info.entry();
        assert_eq!(e.mode.as_deref(), Some("gateway"));
        assert_eq!(e.reason.as_deref(), Some("self"));
        assert_eq!(e.model_identifier.as_deref(), Some("x86_64"));
        assert_eq!(
            e.text,
            format!("Gateway: gw (192.0.2.1) · app {VERSION} · mode gateway · reason self")
        );
    }

    #[test]
    fn detect_finds_a_hostname_and_platform() {
        let info = SelfInfo::detect();
        assert!(!info.host.is_empty());
        assert!(info.platform.starts_with(std::env::consts::OS));
        assert_eq!(uuid::Uuid::parse_str(&info.instance_id).map(|_| ()), Ok(()));
    }
}
