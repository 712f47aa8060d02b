//! The Microsoft clouds: which API host, sign-in authority and token scope belong together.

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Cloud {
    #[default]
    Commercial,
    Us,
    Eu,
    Uk,
    Au,
    /// Switzerland.
    Swa,
    /// India.
    Ina,
    Gcc,
    GccHigh,
    Dod,
}

/// Where a cloud's API and sign-in live, as Microsoft documents them: "Create an app to access
/// Microsoft Defender for Endpoint without a user" (the commercial host and the geographic ones
/// closer to a tenant's data) and "Microsoft Defender for Endpoint for US Government customers"
/// (GCC signs in at the commercial authority; GCC High and DoD at login.microsoftonline.us; both
/// government APIs take tokens for their own host).
pub(crate) struct Endpoints {
    pub api: &'static str,
    pub authority: &'static str,
    /// The token audience without `/.default`: the managed-identity `resource`.
    pub resource: &'static str,
}

const COMMERCIAL_AUTHORITY: &str = "https://login.microsoftonline.com";
const GOVERNMENT_AUTHORITY: &str = "https://login.microsoftonline.us";
/// Commercial APIs still want tokens for the legacy `securitycenter` audience, whatever host serves them.
const COMMERCIAL_RESOURCE: &str = "https://api.securitycenter.microsoft.com";

impl Cloud {
    /// In the order of the variants.
    pub(crate) const NAMES: &'static [&'static str] =
        &["commercial", "us", "eu", "uk", "au", "swa", "ina", "gcc", "gcc-high", "dod"];

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "commercial" | "global" | "public" => Self::Commercial,
            "us" => Self::Us,
            "eu" => Self::Eu,
            "uk" => Self::Uk,
            "au" => Self::Au,
            "swa" => Self::Swa,
            "ina" => Self::Ina,
            "gcc" => Self::Gcc,
            "gcc-high" | "gcchigh" => Self::GccHigh,
            "dod" => Self::Dod,
            _ => return None,
        })
    }

    pub(crate) fn endpoints(self) -> Endpoints {
        let commercial = |api| Endpoints { api, authority: COMMERCIAL_AUTHORITY, resource: COMMERCIAL_RESOURCE };
        match self {
            Self::Commercial => commercial("https://api.security.microsoft.com"),
            Self::Us => commercial("https://us.api.security.microsoft.com"),
            Self::Eu => commercial("https://eu.api.security.microsoft.com"),
            Self::Uk => commercial("https://uk.api.security.microsoft.com"),
            Self::Au => commercial("https://au.api.security.microsoft.com"),
            Self::Swa => commercial("https://swa.api.security.microsoft.com"),
            Self::Ina => commercial("https://ina.api.security.microsoft.com"),
            Self::Gcc => Endpoints {
                api: "https://api-gcc.securitycenter.microsoft.us",
                authority: COMMERCIAL_AUTHORITY,
                resource: "https://api-gcc.securitycenter.microsoft.us",
            },
            Self::GccHigh | Self::Dod => Endpoints {
                api: "https://api-gov.securitycenter.microsoft.us",
                authority: GOVERNMENT_AUTHORITY,
                resource: "https://api-gov.securitycenter.microsoft.us",
            },
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = *self as usize;
        f.write_str(Self::NAMES[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn each_cloud_sets_api_host_authority_scope_and_resource_together() {
        let commercial = "https://login.microsoftonline.com/";
        let government = "https://login.microsoftonline.us/";
        let securitycenter = "https://api.securitycenter.microsoft.com";
        let gcc = "https://api-gcc.securitycenter.microsoft.us";
        let gov = "https://api-gov.securitycenter.microsoft.us";
        let expected = [
            ("commercial", "https://api.security.microsoft.com/", commercial, securitycenter),
            ("us", "https://us.api.security.microsoft.com/", commercial, securitycenter),
            ("eu", "https://eu.api.security.microsoft.com/", commercial, securitycenter),
            ("uk", "https://uk.api.security.microsoft.com/", commercial, securitycenter),
            ("au", "https://au.api.security.microsoft.com/", commercial, securitycenter),
            ("swa", "https://swa.api.security.microsoft.com/", commercial, securitycenter),
            ("ina", "https://ina.api.security.microsoft.com/", commercial, securitycenter),
            ("gcc", "https://api-gcc.securitycenter.microsoft.us/", commercial, gcc),
            ("gcc-high", "https://api-gov.securitycenter.microsoft.us/", government, gov),
            ("dod", "https://api-gov.securitycenter.microsoft.us/", government, gov),
        ];
        assert_eq!(expected.map(|(name, ..)| name), Cloud::NAMES);
        for (name, api, authority, resource) in expected {
            let mut settings = Settings::default();
            settings.set("cloud", Some(name)).unwrap();
            assert_eq!(settings.cloud.to_string(), name);
            assert_eq!(settings.api_root().as_str(), api, "{name}");
            assert_eq!(settings.authority().as_str(), authority, "{name}");
            assert_eq!(settings.scope(), format!("{resource}/.default"), "{name}");
            assert_eq!(settings.resource(), resource, "{name}");
            settings.set("tenant_id", Some("contoso.onmicrosoft.com")).unwrap();
            let audience = crate::auth::assertion_audience(&settings).unwrap();
            assert_eq!(audience, format!("{authority}contoso.onmicrosoft.com/oauth2/v2.0/token"), "{name}");
        }
    }

    #[test]
    fn explicit_hosts_and_scope_override_the_cloud() {
        let mut settings = Settings::default();
        settings.set("cloud", Some("dod")).unwrap();
        settings.set("base_url", Some("https://api.example.test")).unwrap();
        settings.set("authority_url", Some("https://login.example.test")).unwrap();
        settings.set("scope", Some("https://api.securitycenter.microsoft.com/.default")).unwrap();
        assert_eq!(settings.api_root().as_str(), "https://api.example.test/");
        assert_eq!(settings.authority().as_str(), "https://login.example.test/");
        assert_eq!(settings.scope(), "https://api.securitycenter.microsoft.com/.default");
        assert_eq!(settings.resource(), "https://api.securitycenter.microsoft.com");
    }
}
