//! The container's filesystem: a pure plan of mount operations ([`plan`]) and the code that applies it inside
//! the container's mount namespace ([`apply`]).

pub mod apply;
mod dev;
mod home;
pub mod host;
mod layered;
pub mod plan;
pub mod resolve;
pub mod upper;

/// An overlay error's own text and the system call's error behind it, if any (its text does not include it):
/// for messages that carry both, with the errno and without a made-up one.
pub fn overlay_error_parts(e: crate::overlay::OverlayError) -> (String, Option<std::io::Error>) {
    use crate::overlay::OverlayError as E;
    let text = e.to_string();
    let source = match e {
        E::Layer { source, .. } | E::FuseMount { source, .. } | E::Session { source, .. } => Some(source),
        E::KernelMount { source, .. } | E::DevFuse(source) | E::Proc(source) => Some(source),
        E::NoLower | E::WorkOtherFs { .. } | E::Option { .. } => None,
    };
    (text, source)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_overlay_error_keeps_its_errno_apart_from_its_text() {
        let e = crate::overlay::OverlayError::KernelMount {
            path: "/m".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        let (text, source) = super::overlay_error_parts(e);
        assert!(text.starts_with("kernel overlayfs mount on /m failed"), "{text}");
        assert_eq!(source.and_then(|s| s.raw_os_error()), Some(libc::EPERM));
        let (_, source) = super::overlay_error_parts(crate::overlay::OverlayError::NoLower);
        assert!(source.is_none());
    }
}
