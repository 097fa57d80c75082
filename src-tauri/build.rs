//! Build script: Tauri's codegen, with Mailcall's commands declared so that capabilities must
//! grant each one by name (an undeclared command is refused).

fn main() {
    let manifest = tauri_build::AppManifest::new().commands(&[
        "load_settings",
        "save_settings",
        "save_account",
        "remove_account",
        "test_connection",
        "history",
        "fetch_now",
        "load_delivery",
        "add_route",
        "remove_route",
        "save_delivery",
        "load_queue",
        "queue_action",
    ]);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
        .expect("Tauri build step failed (tauri.conf.json, capabilities or icons)");
}
