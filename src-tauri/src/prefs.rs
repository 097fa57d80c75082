//! The tray app's own preferences (notifications), kept in `gui.toml` beside the shared config
//! file, and "start at login" as an XDG autostart entry. The pause switch is not one of them:
//! it is the core's remembered switch ([`mailcall_core::instance::SavedState`]), the same for
//! the tray and the daemon.

use std::path::{Path, PathBuf};

use mailcall_core::fsutil;
use serde::{Deserialize, Serialize};

/// Preferences only the tray app uses; the CLI's config file stays as the CLI knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Prefs {
    /// Show desktop notifications for new mail and errors.
    pub notifications: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            notifications: true,
        }
    }
}

/// The preferences file that belongs to a config file: `gui.toml` in the same directory.
pub fn prefs_path(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .map(|d| d.join("gui.toml"))
        .unwrap_or_else(|| PathBuf::from("gui.toml"))
}

/// What older versions kept in `gui.toml` besides the preferences.
#[derive(Debug, Default, Deserialize)]
struct Legacy {
    /// The pause switch, before it became the core's (`state.toml`).
    paused: Option<bool>,
}

impl Prefs {
    /// Reads the file; a missing or unreadable one gives the defaults (and a warning). Keys of
    /// older versions (`paused`) are ignored here: see [`legacy_paused`].
    pub fn load(path: &Path) -> Prefs {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is not valid ({e}); using default tray preferences",
                    path.display()
                );
                Prefs::default()
            }),
            Err(_) => Prefs::default(),
        }
    }

    /// Writes the file atomically (the core's one writer), owner-only.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = toml::to_string_pretty(self).map_err(|e| e.to_string())?;
        fsutil::write_atomic(path, text.as_bytes(), 0o600).map_err(|e| {
            format!(
                "cannot write {}: {e}. Check that the directory is writable",
                path.display()
            )
        })
    }
}

/// The pause switch an older tray kept in `gui.toml`, if the file still holds one.
pub fn legacy_paused(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    toml::from_str::<Legacy>(&text).ok()?.paused
}

/// The XDG autostart entry that starts Mailcall in the tray at login.
pub fn autostart_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("autostart").join("mailcall.desktop"))
}

/// Whether Mailcall starts at login.
pub fn start_at_login() -> bool {
    autostart_path().is_some_and(|p| p.exists())
}

/// Turns starting at login on or off.
pub fn set_start_at_login(on: bool, exe: &Path) -> Result<(), String> {
    let path = autostart_path()
        .ok_or("cannot find the autostart directory for this user (is HOME set?)")?;
    if on {
        let entry = format!(
            "[Desktop Entry]\nType=Application\nName=Mailcall\nComment=Fetch held mail from your ISP (ETRN or ODMR)\nExec=\"{}\" --tray\nIcon=mailcall\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
            exe.display()
        );
        fsutil::write_atomic(&path, entry.as_bytes(), 0o644).map_err(|e| {
            format!(
                "cannot write {}: {e}. Check that the directory is writable",
                path.display()
            )
        })
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = prefs_path(&dir.path().join("config.toml"));
        assert_eq!(path, dir.path().join("gui.toml"));
        assert_eq!(Prefs::load(&path), Prefs::default());
        let p = Prefs {
            notifications: false,
        };
        p.save(&path).unwrap();
        assert_eq!(Prefs::load(&path), p);
        assert_eq!(legacy_paused(&path), None);
        std::fs::write(&path, "notifications = \"maybe\"").unwrap();
        assert_eq!(Prefs::load(&path), Prefs::default());
    }

    #[test]
    fn an_old_file_with_the_pause_switch_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gui.toml");
        std::fs::write(&path, "notifications = false\npaused = true\n").unwrap();
        assert_eq!(
            Prefs::load(&path),
            Prefs {
                notifications: false
            }
        );
        assert_eq!(legacy_paused(&path), Some(true));
        Prefs::load(&path).save(&path).unwrap();
        assert_eq!(legacy_paused(&path), None, "saving drops the old key");
    }
}
