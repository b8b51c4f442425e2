//! National clouds: the login and Graph hosts of each.

use std::str::FromStr;

use url::Url;

use crate::origin::check_origin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cloud {
    /// Commercial and GCC.
    #[default]
    Global,
    /// GCC High.
    UsGov,
    /// Department of Defense.
    Dod,
}

impl Cloud {
    pub fn login_base(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov | Cloud::Dod => "https://login.microsoftonline.us",
        }
    }

    pub fn graph_base(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::Dod => "https://dod-graph.microsoft.us",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a known cloud; use global (also GCC), usgov (GCC High) or dod")]
pub struct UnknownCloud(pub String);

impl FromStr for Cloud {
    type Err = UnknownCloud;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "global" | "public" | "commercial" | "gcc" => Ok(Cloud::Global),
            "usgov" | "gcchigh" | "gcc-high" => Ok(Cloud::UsGov),
            "dod" | "usgovdod" => Ok(Cloud::Dod),
            _ => Err(UnknownCloud(text.to_owned())),
        }
    }
}

/// Where to get tokens and alerts. Both are origins (a path is allowed for private endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub login: Url,
    pub graph: Url,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} `{value}` is not allowed: {problem}")]
pub struct BadEndpoint {
    pub setting: &'static str,
    pub value: String,
    pub problem: String,
}

impl Endpoints {
    /// The cloud's hosts, each replaced by an override when one is given.
    pub fn for_cloud(
        cloud: Cloud,
        login_override: Option<&str>,
        graph_override: Option<&str>,
    ) -> Result<Self, BadEndpoint> {
        Ok(Self {
            login: parse_base("LOGIN_BASE_URL", login_override.unwrap_or(cloud.login_base()))?,
            graph: parse_base("GRAPH_BASE_URL", graph_override.unwrap_or(cloud.graph_base()))?,
        })
    }

    /// `{graph origin}/.default`: the client-credentials scope for Graph.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.graph.as_str().trim_end_matches('/'))
    }
}

fn parse_base(setting: &'static str, value: &str) -> Result<Url, BadEndpoint> {
    let bad = |problem: &str| BadEndpoint { setting, value: value.to_owned(), problem: problem.to_owned() };
    let mut url = Url::parse(value.trim()).map_err(|error| bad(&format!("not a URL ({error})")))?;
    // The same rule the client applies before every request.
    check_origin(&url).map_err(|error| bad(&error.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not carry a query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_have_their_hosts() {
        let gov = Endpoints::for_cloud("usgov".parse().unwrap(), None, None).unwrap();
        assert_eq!(gov.login.as_str(), "https://login.microsoftonline.us/");
        assert_eq!(gov.scope(), "https://graph.microsoft.us/.default");
        let dod = Endpoints::for_cloud(Cloud::Dod, None, None).unwrap();
        assert_eq!(dod.scope(), "https://dod-graph.microsoft.us/.default");
        assert_eq!(Cloud::from_str("GCC").unwrap(), Cloud::Global);
        assert!(Cloud::from_str("china").is_err());
    }

    #[test]
    fn overrides_replace_hosts_and_are_checked() {
        let local =
            Endpoints::for_cloud(Cloud::Global, Some("http://127.0.0.1:9"), Some("http://127.0.0.1:9"))
                .unwrap();
        assert_eq!(local.scope(), "http://127.0.0.1:9/.default");
        assert!(Endpoints::for_cloud(Cloud::Global, None, Some("graph.microsoft.com")).is_err());
        assert!(Endpoints::for_cloud(Cloud::Global, Some("ftp://x"), None).is_err());
        // Plain http only to this machine; no user info.
        for (login, graph) in [
            (Some("http://login.microsoftonline.com"), None),
            (None, Some("http://graph.microsoft.com")),
            (None, Some("http://192.168.1.10:8080")),
            (Some("https://user:secret@login.example"), None),
        ] {
            let error = Endpoints::for_cloud(Cloud::Global, login, graph).unwrap_err();
            assert!(error.to_string().contains("not allowed"), "{error}");
        }
        assert!(Endpoints::for_cloud(Cloud::Global, Some("http://localhost:8080"), None).is_ok());
    }
}
