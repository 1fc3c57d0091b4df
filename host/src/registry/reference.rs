//! `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`: a policy module in an
//! OCI registry. The digest is the pin; a reference is checked character by
//! character, so nothing in it can reach a URL or a file it does not name.

use std::fmt;

/// The scheme of module references in registries.
pub(crate) const SCHEME: &str = "oci://";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Reference {
    /// `host[:port]`.
    pub(crate) registry: String,
    /// `team/policies/rules`.
    pub(crate) repository: String,
    pub(crate) tag: Option<String>,
    /// Hex sha256 of the manifest.
    pub(crate) digest: Option<String>,
}

impl Reference {
    pub(crate) fn parse(text: &str) -> Result<Reference, String> {
        let bad = |why: &str| format!("'{text}' is not an OCI reference: {why}");
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it does not start with oci://"))?;
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .filter(|hex| super::store::is_hex_digest(hex))
                    .ok_or_else(|| bad("the digest is not sha256: and 64 lowercase hex digits"))?;
                (name, Some(hex.to_string()))
            }
            None => (rest, None),
        };
        let (registry, path) = name
            .split_once('/')
            .ok_or_else(|| bad("it names a registry but no repository"))?;
        if !valid_registry(registry) {
            return Err(bad("the registry is not host[:port]"));
        }
        // A tag follows the last `:` after the last `/`.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (path, None),
        };
        if repository.len() > 255 || !repository.split('/').all(valid_component) {
            return Err(bad(
                "the repository must be lowercase path components (a-z, 0-9, '.', '_', '-')",
            ));
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(bad("the tag must be 1-128 of A-Z, a-z, 0-9, '.', '_', '-'"));
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad(
                "name a tag or a digest (oci://REGISTRY/REPOSITORY:TAG@sha256:DIGEST)",
            ));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The same reference pinned to `digest`.
    pub(crate) fn pinned(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// What the registry's manifest endpoint takes: the digest when there
    /// is one, else the tag.
    pub(crate) fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => format!("sha256:{digest}"),
            (None, Some(tag)) => tag.clone(),
            (None, None) => unreachable!("parse requires a tag or a digest"),
        }
    }

    /// A registry on this machine: plain HTTP is allowed without asking.
    pub(crate) fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => self.registry.as_str(),
        };
        is_loopback_host(host)
    }
}

/// `localhost`, `[::1]` or an IPv4 loopback address.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@sha256:{digest}")?;
        }
        Ok(())
    }
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (registry, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the distribution spec's path
/// component: never `.` or `..`.
fn valid_component(component: &str) -> bool {
    let b = component.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let separator_ok = |w: &[u8]| match (w[0], w[1]) {
        (b'-', b'-') | (b'_', b'_') => true,
        (x, y) => alnum(&x) || alnum(&y),
    };
    !b.is_empty()
        && alnum(&b[0])
        && alnum(&b[b.len() - 1])
        && b.iter()
            .all(|c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
        && b.windows(2).all(separator_ok)
        && !component.contains("___")
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "4bc453b53cb3d914b45f4b250294236adba2c0e09ff6f03793949e7e39fd4cc1";

    #[test]
    fn references_read_registry_repository_tag_and_digest() {
        let r = Reference::parse(&format!(
            "oci://127.0.0.1:5000/team/rules:1.2@sha256:{DIGEST}"
        ))
        .unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.digest.as_deref()
            ),
            ("127.0.0.1:5000", "team/rules", Some("1.2"), Some(DIGEST))
        );
        assert!(r.is_loopback());
        assert_eq!(
            r.to_string(),
            format!("oci://127.0.0.1:5000/team/rules:1.2@sha256:{DIGEST}")
        );
        assert_eq!(r.manifest_reference(), format!("sha256:{DIGEST}"));
        let r = Reference::parse("oci://ghcr.io/acme/policies/freeze:v1").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref(), r.digest.as_deref()),
            ("acme/policies/freeze", Some("v1"), None)
        );
        assert!(!r.is_loopback());
        assert_eq!(
            r.pinned(DIGEST).manifest_reference(),
            format!("sha256:{DIGEST}")
        );
        assert!(
            Reference::parse("oci://localhost:5000/rules:latest")
                .unwrap()
                .is_loopback()
        );
        assert!(
            Reference::parse("oci://[::1]:5000/rules:latest")
                .unwrap()
                .is_loopback()
        );
        assert!(Reference::parse("oci://ghcr.io/a__b/c--d/e.f:v1").is_ok());
    }

    #[test]
    fn anything_that_could_reach_elsewhere_is_refused() {
        for bad in [
            "ghcr.io/acme/rules:v1",
            "oci://ghcr.io",
            "oci://ghcr.io/acme/rules",
            "oci://ghcr.io/acme/../rules:v1",
            "oci://ghcr.io/Acme/rules:v1",
            "oci://ghcr.io//rules:v1",
            "oci://ghcr.io/acme/rules:v1?x=y",
            "oci://ghcr.io/acme/rules:v1#frag",
            "oci://user@ghcr.io/acme/rules:v1",
            "oci://ghcr.io/acme/rules@sha256:abc",
            "oci://ghcr.io/acme/rules@sha512:abc",
            "oci://gh cr.io/acme/rules:v1",
            "oci://ghcr.io:port/acme/rules:v1",
            "oci://ghcr.io/acme/rules:-v1",
            "oci://ghcr.io/acme/rules..x:v1",
            "oci://ghcr.io/acme/rules___x:v1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
