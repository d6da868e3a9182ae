//! The `pull`, `login` and `logout` commands: options in, one line of result or one error out (exit 125).

use super::authfile::Credentials;
use super::client::ClientOptions;
use super::login;
use super::platform::Platform;
use crate::cli::{LoginArgs, LogoutArgs, PullArgs, RegistryArgs};
use crate::image::pull::{self, PullOptions};
use crate::image::search::Search;
use crate::image::Store;
use std::time::{Duration, Instant};

/// Seconds without a byte from the registry after which a transfer counts as stalled (and is retried).
pub const READ_TIMEOUT_ENV: &str = "BURROW_PULL_TIMEOUT";

/// The pull options of `pull` and `run IMAGE`, from the command line and the environment.
pub fn pull_options(args: &RegistryArgs, platform: Option<&str>, quiet: bool) -> Result<PullOptions, String> {
    let platform = platform.map(Platform::parse).transpose().map_err(|e| e.to_string())?;
    let retry_delay = args.retry_delay.as_deref().map(parse_duration).transpose()?;
    let creds = match &args.creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) if !u.is_empty() => Some(Credentials { username: u.into(), password: p.into() }),
            _ => return Err("--creds: expected USER:PASSWORD".into()),
        },
        None => None,
    };
    let mut client =
        ClientOptions { tls_verify: args.tls_verify, retries: args.retry, retry_delay, ..Default::default() };
    if let Ok(v) = std::env::var(READ_TIMEOUT_ENV) {
        let secs: f64 = v.parse().map_err(|_| format!("{READ_TIMEOUT_ENV}={v:?}: expected a number of seconds"))?;
        if !(secs > 0.0 && secs < 1e6) {
            return Err(format!("{READ_TIMEOUT_ENV}={v:?}: expected a positive number of seconds"));
        }
        client.read_timeout = Duration::from_secs_f64(secs);
    }
    Ok(PullOptions { client, platform, authfile: args.authfile.clone(), creds, quiet })
}

/// `500ms`, `2s`, `1m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("--retry-delay {text:?}: expected e.g. 500ms, 2s or 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("--retry-delay {text:?}: the unit is ms, s or m")),
    };
    if !(0.0..=3600.0).contains(&secs) {
        return Err(format!("--retry-delay {text:?}: at most an hour"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("burrow: {msg}");
    125
}

/// `burrow pull`: prints the image ID on stdout (as podman does) and one summary line on stderr.
pub fn pull(args: &PullArgs) -> i32 {
    let start = Instant::now();
    let opts = match pull_options(&args.registry, args.platform.as_deref(), args.quiet) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    // A short name: each search registry of registries.conf in turn (docker.io when there are none).
    let search = match Search::load() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let candidates = match search.candidates(&args.image) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let store = match Store::open(args.store.store.clone()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match pull::pull_first(&store, &args.image, &search, &candidates, &opts) {
        Ok(p) => {
            let reference = &p.image.reference;
            if !args.quiet {
                let ms = start.elapsed().as_millis();
                if p.downloaded {
                    let mib = p.bytes_fetched as f64 / (1024.0 * 1024.0);
                    eprintln!(
                        "burrow: pulled {reference}: {} layer(s) fetched, {mib:.1} MiB, {ms} ms",
                        p.layers_fetched
                    );
                } else {
                    eprintln!("burrow: {reference} is up to date ({ms} ms)");
                }
            }
            println!("{}", p.image.id().hex());
            0
        }
        Err(e) => fail(e),
    }
}

pub fn login(args: &LoginArgs) -> i32 {
    match login::login(args) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => fail(e),
    }
}

pub fn logout(args: &LogoutArgs) -> i32 {
    match login::logout(args) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        for bad in ["", "x", "5h", "2 s", "99999m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_from_flags() {
        let mut a = RegistryArgs { creds: Some("u:p:q".into()), ..RegistryArgs::default() };
        let o = pull_options(&a, Some("linux/arm64"), true).unwrap();
        assert_eq!(o.creds.unwrap().password, "p:q");
        assert_eq!(o.platform.unwrap().arch, "arm64");
        assert!(o.client.tls_verify);
        a.creds = Some("nopass".into());
        assert!(pull_options(&a, None, false).unwrap_err().contains("USER:PASSWORD"));
        a.creds = None;
        assert!(pull_options(&a, Some("linux"), false).unwrap_err().contains("OS/ARCH"));
    }
}
