//! Build script: Tauri's codegen, with Mailcall's commands declared so that capabilities must
//! grant each one by name (an undeclared command is refused).

/// The names in `src/window_commands.in`, the list the app registers too.
macro_rules! window_commands {
    ($($name:ident),* $(,)?) => {
        const COMMANDS: &[&str] = &[$(stringify!($name)),*];
    };
}

include!("src/window_commands.in");

fn main() {
    println!("cargo:rerun-if-changed=src/window_commands.in");
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
        .expect("Tauri build step failed (tauri.conf.json, capabilities or icons)");
}
