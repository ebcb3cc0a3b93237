//! The Instances dashboard: one self-contained page compiled into the binary.

/// The page; no CDN, no other asset.
pub const PAGE: &str = include_str!("dashboard.html");
