//! The methods and events rollcall speaks (§4, §7): one list, used by
//! `hello-ok`'s `features`, by dispatch and by the request metrics.

/// A method rollcall answers after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `system-presence`: the presence list.
    SystemPresence,
    /// `system-event`: a presence beacon.
    SystemEvent,
    /// `health`: uptime and the presence version.
    Health,
    /// `node.event`: an event a node host reports (role `node`).
    NodeEvent,
}

impl Method {
    /// Every method, in the order `hello-ok` lists them.
    pub const ALL: [Method; 4] = [
        Method::SystemPresence,
        Method::SystemEvent,
        Method::Health,
        Method::NodeEvent,
    ];

    /// The method's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::SystemPresence => "system-presence",
            Method::SystemEvent => "system-event",
            Method::Health => "health",
            Method::NodeEvent => "node.event",
        }
    }

    /// The method named `name`, if rollcall answers it.
    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// The method names, as `hello-ok` lists them.
pub const METHOD_NAMES: [&str; 4] = [
    Method::ALL[0].as_str(),
    Method::ALL[1].as_str(),
    Method::ALL[2].as_str(),
    Method::ALL[3].as_str(),
];

/// The events rollcall sends, as `hello-ok` lists them.
pub const EVENTS: [&str; 5] = [
    "connect.challenge",
    "presence",
    "presence.delta",
    "tick",
    "shutdown",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_parses_back_from_its_name() {
        for method in Method::ALL {
            assert_eq!(Method::parse(method.as_str()), Some(method));
        }
        assert_eq!(Method::parse("connect"), None);
        assert_eq!(Method::parse("System-Presence"), None, "names are exact");
    }

    #[test]
    fn names_follow_the_method_list() {
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(names, METHOD_NAMES);
    }
}
