//! The tray app's own preferences (notifications, pause), kept in `gui.toml` beside the shared
//! config file, and "start at login" as an XDG autostart entry.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Preferences only the tray app uses; the CLI's config file stays as the CLI knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Prefs {
    /// Show desktop notifications for new mail and errors.
    pub notifications: bool,
    /// Automatic fetching (network up, interval) is paused; "Fetch now" still works.
    pub paused: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            notifications: true,
            paused: false,
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

impl Prefs {
    /// Reads the file; a missing or unreadable one gives the defaults (and a warning).
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

    /// Writes the file (temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = toml::to_string_pretty(self).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("toml.tmp");
            std::fs::write(&tmp, text.as_bytes())?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            format!(
                "cannot write {}: {e}. Check that the directory is writable",
                path.display()
            )
        })
    }
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
            "[Desktop Entry]\nType=Application\nName=Mailcall\nComment=Fetch held mail from your ISP (ETRN)\nExec=\"{}\" --tray\nIcon=mailcall\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
            exe.display()
        );
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, entry).map_err(|e| {
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
            paused: true,
        };
        p.save(&path).unwrap();
        assert_eq!(Prefs::load(&path), p);
        std::fs::write(&path, "notifications = \"maybe\"").unwrap();
        assert_eq!(Prefs::load(&path), Prefs::default());
    }
}
