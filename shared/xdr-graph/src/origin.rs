//! Where the client may send credentials and tokens: `https` anywhere, `http` only to this
//! machine (the simulated tenant). One rule, used when settings are read and again before every
//! request, so a base URL, a nextLink or a token URL built from `TENANT_ID` cannot slip past it.

use std::net::IpAddr;

use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error(
        "the scheme must be https (http only for a simulator on this machine, such as http://127.0.0.1:port)"
    )]
    NotHttps,
    #[error("there is no host")]
    NoHost,
    #[error("it must not carry a user name or password")]
    UserInfo,
}

/// Whether `url` may carry the client secret or an access token.
pub fn check_origin(url: &Url) -> Result<(), OriginError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OriginError::UserInfo);
    }
    let host = url.host().ok_or(OriginError::NoHost)?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&host) => Ok(()),
        _ => Err(OriginError::NotHttps),
    }
}

/// `localhost` (which resolves only to loopback, RFC 6761), 127.0.0.0/8 and ::1.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Host::Ipv4(address) => IpAddr::V4(*address).is_loopback(),
        Host::Ipv6(address) => {
            IpAddr::V6(*address).is_loopback() || address.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), OriginError> {
        check_origin(&Url::parse(text).unwrap())
    }

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        for allowed in [
            "https://graph.microsoft.com/",
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "http://127.0.0.1:9000/",
            "http://127.8.9.10/",
            "http://[::1]:8080/",
            "http://localhost:3000/",
            "http://LOCALHOST./",
        ] {
            assert_eq!(check(allowed), Ok(()), "{allowed}");
        }
        for (refused, why) in [
            ("http://graph.microsoft.com/", OriginError::NotHttps),
            ("http://evil.example/", OriginError::NotHttps),
            ("http://10.0.0.1/", OriginError::NotHttps),
            ("http://localhost.evil.example/", OriginError::NotHttps),
            ("http://127.0.0.1.nip.io/", OriginError::NotHttps),
            ("ftp://127.0.0.1/", OriginError::NotHttps),
            ("file:///etc/passwd", OriginError::NoHost),
            ("https://user:pass@graph.microsoft.com/", OriginError::UserInfo),
        ] {
            assert_eq!(check(refused), Err(why), "{refused}");
        }
    }
}
