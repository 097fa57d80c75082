//! The spool on disk, and what a crash at each step leaves: a writer stopped before its
//! commit leaves nothing queued (the ISP never got a 250, so it still has the mail) and the
//! next start cleans up; a committed message survives with every recipient queued; a state
//! being replaced is the old state or the new one, never a torn one; a removal cut short
//! leaves a state that the next start removes.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::routing::Route;

fn target(d: &str) -> Target {
    Route::parse("*", d, None, None).unwrap().target
}

fn envelope(recipients: &[(&str, &str)]) -> Envelope {
    Envelope {
        received_at: Utc::now(),
        sender: "s@outside.test".into(),
        recipients: recipients
            .iter()
            .map(|(a, d)| QueuedRecipient {
                address: a.to_string(),
                target: target(d),
            })
            .collect(),
        peer: "127.0.0.1".into(),
    }
}

const MESSAGE: &[u8] =
    b"Received: from isp\r\nMessage-ID: <m1@x.test>\r\nSubject: Hi\r\n\r\nbody\r\n";

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A writer's file as a dead process would leave it: named for a pid that no longer runs.
fn as_if_dead(spool: &Spool) {
    let mut child = crate::fsutil::short_lived().spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    for name in files(&spool.root().join("tmp")) {
        let renamed = name.replacen(
            &format!("P{}Q", std::process::id()),
            &format!("P{dead}Q"),
            1,
        );
        std::fs::rename(
            spool.root().join("tmp").join(&name),
            spool.root().join("tmp").join(renamed),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn a_committed_message_reads_back_whole_with_every_recipient_queued() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let env = envelope(&[
        ("a@x.test", "lmtp:127.0.0.1:24"),
        ("b@x.test", "smtp:lan:25"),
    ]);
    let mut w = spool.begin(&env).await.unwrap();
    w.write(MESSAGE).await.unwrap();
    assert_eq!(w.size(), MESSAGE.len() as u64);
    let id = w.id().to_owned();
    let path = w.commit().await.unwrap();
    assert!(path.starts_with(spool.root().join("new")));
    assert_eq!(spool.take_fresh().len(), 1, "the runner is told");
    let (entries, problems) = spool.entries().unwrap();
    assert!(problems.is_empty());
    let e = &entries[0];
    assert_eq!((e.id.as_str(), e.envelope.clone()), (id.as_str(), env));
    assert_eq!(e.state, State::fresh(2));
    assert_eq!(e.size, MESSAGE.len() as u64);
    assert_eq!(spool.read_message(e).unwrap(), MESSAGE);
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    spool
        .data(e)
        .await
        .unwrap()
        .read_to_end(&mut data)
        .await
        .unwrap();
    assert_eq!(data, MESSAGE);
    let h = spool.headline(e);
    assert_eq!(
        (h.message_id.as_deref(), h.subject.as_deref()),
        (Some("m1@x.test"), Some("Hi"))
    );
    assert_eq!(
        e.recipients_for(&target("smtp:lan:25"), Status::Queued),
        [1]
    );
    assert!(files(&spool.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn a_crash_before_the_commit_leaves_nothing_queued_and_the_next_start_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    // Step 1: the file is made and the envelope written; step 2: data written. A crash (the
    // process gone: nothing runs, no Drop) at either leaves a tmp/ file and nothing in new/.
    for step in 1..=2 {
        let mut w = spool
            .begin(&envelope(&[("a@x.test", "lmtp:h")]))
            .await
            .unwrap();
        if step == 2 {
            w.write(MESSAGE).await.unwrap();
        }
        std::mem::forget(w);
    }
    assert_eq!(files(&spool.root().join("tmp")).len(), 2);
    assert!(
        spool.names().unwrap().is_empty(),
        "nothing was acknowledged, nothing is queued"
    );
    // The next start (another process) removes them; a live writer's file would stay. Where
    // there is no /proc to tell a live writer from a dead one (Windows), they stay until they
    // are 36 hours old: unacknowledged, so the sender still has the message.
    as_if_dead(&spool);
    let reopened = Spool::open(spool.root()).unwrap();
    if cfg!(target_os = "linux") {
        assert_eq!(reopened.clean().unwrap(), 2);
        assert!(files(&spool.root().join("tmp")).is_empty());
    } else {
        assert_eq!(reopened.clean().unwrap(), 0);
    }
    let left = files(&spool.root().join("tmp"));
    // An aborted or dropped writer leaves nothing either.
    let w = spool
        .begin(&envelope(&[("a@x.test", "lmtp:h")]))
        .await
        .unwrap();
    w.abort().await;
    drop(
        spool
            .begin(&envelope(&[("a@x.test", "lmtp:h")]))
            .await
            .unwrap(),
    );
    assert_eq!(files(&spool.root().join("tmp")), left);
}

#[tokio::test]
async fn state_changes_survive_and_a_torn_replacement_is_the_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let mut w = spool
        .begin(&envelope(&[("a@x.test", "lmtp:h"), ("b@x.test", "lmtp:h")]))
        .await
        .unwrap();
    w.write(MESSAGE).await.unwrap();
    w.commit().await.unwrap();
    let name = spool.names().unwrap().remove(0);
    let mut e = spool.entry(&name).unwrap().unwrap();
    e.state.recipients[0].status = Status::Delivered;
    e.state.recipients[1].attempts = 1;
    e.state.recipients[1].reply = Some("451 4.3.0 later".into());
    spool.save_state(&name, &e.state, true).unwrap();
    // A deferral being written when the process died: its temporary file, never renamed.
    let torn = spool
        .root()
        .join("state")
        .join(format!(".{name}.tmp999999"));
    std::fs::write(&torn, b"{\"recipients\":[{\"status\":\"deliv").unwrap();
    let back = Spool::open(spool.root()).unwrap();
    assert_eq!(
        back.entry(&name).unwrap().unwrap().state,
        e.state,
        "the last whole state"
    );
    assert!(back.clean().unwrap() >= 1);
    assert!(!torn.exists());
    // A state file damaged some other way: every recipient counts as queued (at worst a copy
    // goes twice; none is dropped).
    std::fs::write(spool.root().join("state").join(&name), b"garbage").unwrap();
    assert_eq!(back.entry(&name).unwrap().unwrap().state, State::fresh(2));
    // Deferrals are written without fsync, but atomically just the same.
    spool.save_state(&name, &e.state, false).unwrap();
    assert_eq!(back.entry(&name).unwrap().unwrap().state, e.state);
}

#[tokio::test]
async fn a_removal_cut_short_leaves_a_state_the_next_start_removes() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let mut w = spool
        .begin(&envelope(&[("a@x.test", "lmtp:h")]))
        .await
        .unwrap();
    w.write(MESSAGE).await.unwrap();
    w.commit().await.unwrap();
    let name = spool.names().unwrap().remove(0);
    spool.save_state(&name, &State::fresh(1), true).unwrap();
    // remove() takes the message first: a crash right after leaves only the state.
    std::fs::remove_file(spool.root().join("new").join(&name)).unwrap();
    assert!(spool.entry(&name).unwrap().is_none());
    assert_eq!(spool.clean().unwrap(), 1);
    assert!(files(&spool.root().join("state")).is_empty());
    // remove() of what is gone already is fine.
    spool.remove(&name).unwrap();
}

#[test]
fn the_lock_is_exclusive_across_opens_and_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let held = spool.try_lock().unwrap().expect("free at first");
    let other = Spool::open(spool.root()).unwrap();
    assert!(other.try_lock().unwrap().is_none(), "held by the first");
    drop(held);
    assert!(other.try_lock().unwrap().is_some(), "free again");
}

#[test]
fn ids_and_order() {
    assert_eq!(id_of("1718.M5P7Q1.host.example"), "1718.M5P7Q1");
    assert_eq!(id_of("plain"), "plain");
    let mut names = vec!["20.M1P1Q1.h", "3.M9P1Q1.h", "3.M10P1Q2.h"];
    names.sort_by_key(|n| sort_key(n));
    assert_eq!(names, ["3.M9P1Q1.h", "3.M10P1Q2.h", "20.M1P1Q1.h"]);
}

#[test]
fn a_file_too_short_to_be_ours_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    std::fs::write(dir.path().join("spool/new/stray"), b"abc").unwrap();
    let e = spool.entry("stray").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("stray") && text.contains("too short"),
        "{text}"
    );
    assert!(text.contains("move it out"), "{text}");
    let (entries, problems) = spool.entries().unwrap();
    assert!(entries.is_empty());
    assert_eq!(problems.len(), 1, "{problems:?}");
}
