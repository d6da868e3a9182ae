//! Platforms (`os/arch[/variant]`, GOOS/GOARCH names as image indexes use them) and the choice of one
//! manifest from an image index: containerd's and podman's rules, reduced to what a Linux host needs.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--platform {0:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64 or linux/arm/v7")]
pub struct PlatformError(pub String);

/// A platform in the image index's vocabulary (`linux`, `amd64`, `v8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`; architecture aliases are normalized (`x86_64` → `amd64`, `aarch64` → `arm64`).
    pub fn parse(text: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = text.split('/').collect();
        let ok = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(PlatformError(text.into()));
        }
        let (arch, implied) = normalize_arch(&parts[1].to_ascii_lowercase());
        let variant = parts.get(2).map(|v| v.to_ascii_lowercase()).or(implied);
        Ok(Platform { os: parts[0].to_ascii_lowercase(), arch, variant })
    }

    /// The platform of this machine (of the running binary: a 32-bit burrow on a 64-bit kernel asks for 32-bit
    /// images, which is what it can run without emulation only if the kernel has that personality).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform { os: "linux".into(), arch: arch.into(), variant: variant.map(String::from) }
    }

    /// How well an index entry's platform fits this wanted platform: None when it cannot run, a higher score
    /// for a closer fit. OS and architecture must match; a wanted variant must match the entry's, an entry
    /// without variant fits any (and scores lower than an exact variant). arm64's `v8` is its default variant.
    pub fn score(&self, os: &str, arch: &str, variant: Option<&str>) -> Option<u8> {
        let (arch, implied) = normalize_arch(arch);
        let variant = variant.map(str::to_ascii_lowercase).or(implied);
        if os != self.os || arch != self.arch {
            return None;
        }
        match (&self.variant, variant) {
            (Some(want), Some(have)) if *want == have => Some(3),
            (Some(_), Some(_)) => None,
            (None, None) => Some(3),
            (None, Some(_)) => Some(1),
            (Some(_), None) => Some(2),
        }
    }
}

/// GOARCH names for the aliases people type, and the variant an alias implies.
fn normalize_arch(arch: &str) -> (String, Option<String>) {
    match arch {
        "x86_64" | "x86-64" => ("amd64".into(), None),
        "aarch64" => ("arm64".into(), Some("v8".into())),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "i386" | "i686" => ("386".into(), None),
        "arm64" => ("arm64".into(), Some("v8".into())),
        other => (other.into(), None),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            // arm64's implied v8 is not worth printing.
            Some(v) if !(self.arch == "arm64" && v == "v8") => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let p = Platform::parse("linux/amd64").unwrap();
        assert_eq!((p.os.as_str(), p.arch.as_str(), p.variant), ("linux", "amd64", None));
        assert_eq!(Platform::parse("linux/x86_64").unwrap().arch, "amd64");
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(Platform::parse("linux/aarch64").unwrap().to_string(), "linux/arm64");
        for bad in ["linux", "linux/", "/amd64", "linux/amd64/v1/x", "linux/am d64", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert!(PlatformError("x".into()).to_string().contains("OS/ARCH"));
    }

    #[test]
    fn host_is_linux_and_a_goarch_name() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.arch.contains('_'), "{h}");
        assert_eq!(h.score(&h.os, &h.arch, h.variant.as_deref()), Some(3));
    }

    #[test]
    fn scores_variants() {
        let arm7 = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(arm7.score("linux", "arm", Some("v7")), Some(3));
        assert_eq!(arm7.score("linux", "arm", Some("v6")), None);
        assert_eq!(arm7.score("linux", "arm", None), Some(2));
        assert_eq!(arm7.score("linux", "arm64", Some("v8")), None);
        assert_eq!(arm7.score("windows", "arm", Some("v7")), None);
        // arm64 entries usually carry no variant, or v8: both fit.
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert_eq!(arm64.score("linux", "arm64", None), Some(3));
        assert_eq!(arm64.score("linux", "arm64", Some("v8")), Some(3));
        assert_eq!(arm64.score("linux", "arm64", Some("v9")), None);
        let amd = Platform::parse("linux/amd64").unwrap();
        assert_eq!(amd.score("linux", "amd64", None), Some(3));
        assert_eq!(amd.score("linux", "amd64", Some("v3")), Some(1));
        // buildkit's attestation manifests are unknown/unknown: never chosen.
        assert_eq!(amd.score("unknown", "unknown", None), None);
    }
}
