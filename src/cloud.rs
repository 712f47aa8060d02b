//! The Microsoft clouds: which API host, sign-in authority and token scope belong together.

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cloud {
    #[default]
    Commercial,
    Us,
    Eu,
    Uk,
    Au,
    Gcc,
    GccHigh,
    Dod,
}

/// Where a cloud's API and sign-in live, as Microsoft documents them
/// ("Use Microsoft Defender for Endpoint APIs" and "Defender for Endpoint for US Government customers").
pub struct Endpoints {
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
    pub const NAMES: &'static [&'static str] = &["commercial", "us", "eu", "uk", "au", "gcc", "gcc-high", "dod"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "commercial" | "global" | "public" => Self::Commercial,
            "us" => Self::Us,
            "eu" => Self::Eu,
            "uk" => Self::Uk,
            "au" => Self::Au,
            "gcc" => Self::Gcc,
            "gcc-high" | "gcchigh" => Self::GccHigh,
            "dod" => Self::Dod,
            _ => return None,
        })
    }

    pub fn endpoints(self) -> Endpoints {
        let commercial = |api| Endpoints { api, authority: COMMERCIAL_AUTHORITY, resource: COMMERCIAL_RESOURCE };
        match self {
            Self::Commercial => commercial("https://api.security.microsoft.com"),
            Self::Us => commercial("https://us.api.security.microsoft.com"),
            Self::Eu => commercial("https://eu.api.security.microsoft.com"),
            Self::Uk => commercial("https://uk.api.security.microsoft.com"),
            Self::Au => commercial("https://au.api.security.microsoft.com"),
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
