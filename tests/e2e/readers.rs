//! Dovecot as the LAN mail server and the reader of Mailcall's Maildir: the harness's own LMTP
//! check (per-recipient replies, an unknown user, a restart with the same mail), Dovecot reading
//! what a real ETRN fetch stored (counts, Message-IDs, flags of new/ mail, the bytes over IMAP,
//! files moved to cur/ and Mailcall writing on after that), and a Maildir++ folder Mailcall fills
//! showing up as an IMAP folder, also when Mailcall made the Maildir around it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use mailcall_e2e::dovecot::MailboxStatus;
use mailcall_e2e::{
    Cli, Dovecot, DovecotMessage, DovecotOptions, IspOptions, KeyringEnv, LmtpDelivery, Maildir,
    Message, PostfixIsp,
};

use crate::{fetch, listener_port, set_plain_account, write_base_config};

/// A message from outside for `to`, numbered `n` (unique Message-ID `<lan-n@outside.test>`).
fn lan_message(n: usize, to: &str) -> Message {
    Message {
        from: "sender@outside.test".to_string(),
        to: to.to_string(),
        subject: format!("lan {n}"),
        message_id: format!("<lan-{n}@outside.test>"),
        body: format!("LAN message {n}.\n.a dot-stuffed line"),
    }
}

fn sorted_ids<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<String> {
    let mut ids: Vec<String> = messages.into_iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    ids
}

/// Every accepted recipient's post-DATA reply is `250 2.0.0 <rcpt> ... Saved`.
fn assert_saved(delivery: &LmtpDelivery, recipients: &[&str], dovecot: &Dovecot) {
    let got: Vec<&str> = delivery
        .per_recipient
        .iter()
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(
        got,
        recipients,
        "one reply per accepted recipient after the dot, in RCPT order\n{delivery}\n{}",
        dovecot.log()
    );
    for (rcpt, reply) in &delivery.per_recipient {
        let text = reply.lines.join(" ");
        assert!(
            reply.code == 250
                && text.starts_with(&format!("2.0.0 <{rcpt}>"))
                && text.ends_with("Saved"),
            "expected `250 2.0.0 <{rcpt}> <id> Saved`, got {reply}\n{delivery}\n{}",
            dovecot.log()
        );
    }
}

fn flags_by_id(messages: &[DovecotMessage]) -> BTreeMap<String, Vec<String>> {
    messages
        .iter()
        .map(|m| (m.message_id.clone(), m.flags.clone()))
        .collect()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0)
}

#[test]
fn dovecot_lmtp_replies_per_recipient_and_doveadm_sees_exactly_what_it_saved() {
    let started = Instant::now();
    let mut dovecot = Dovecot::start(DovecotOptions::new());
    let start_time = started.elapsed();

    let m1 = lan_message(1, "alice@lan.test");
    let d1 = dovecot.deliver(&m1, &["alice@lan.test"]);
    assert_saved(&d1, &["alice@lan.test"], &dovecot);

    let m2 = lan_message(2, "bob@lan.test");
    assert_saved(&dovecot.deliver(&m2, &["bob"]), &["bob"], &dovecot);

    // Both users in one transaction: two replies after the one dot.
    let m3 = lan_message(3, "alice@lan.test");
    let d3 = dovecot.deliver(&m3, &["alice@lan.test", "bob@lan.test"]);
    assert_saved(&d3, &["alice@lan.test", "bob@lan.test"], &dovecot);

    // An unknown user is refused at RCPT; the known one still gets the message.
    let m4 = lan_message(4, "alice@lan.test");
    let d4 = dovecot.deliver(&m4, &["nobody@lan.test", "alice@lan.test"]);
    let refused = d4.outcome("nobody@lan.test").cloned();
    assert!(
        refused.as_ref().is_some_and(|r| r.code == 550
            && r.lines
                .join(" ")
                .starts_with("5.1.1 <nobody@lan.test> User doesn't exist")),
        "unknown user: expected `550 5.1.1 <nobody@lan.test> User doesn't exist: ...`\n{d4}"
    );
    assert_saved(&d4, &["alice@lan.test"], &dovecot);
    assert_eq!(
        d4.codes(),
        [
            ("nobody@lan.test".to_string(), 550),
            ("alice@lan.test".to_string(), 250)
        ]
    );

    // Nobody accepted: no DATA at all.
    let d5 = dovecot.deliver(&lan_message(5, "nobody@lan.test"), &["nobody@lan.test"]);
    assert!(d5.data.is_none() && d5.per_recipient.is_empty(), "{d5}");

    // The unix socket is the same service.
    let m6 = lan_message(6, "bob@lan.test");
    let mut unix = dovecot.lmtp_unix();
    let d6 = unix
        .deliver(&m6.from, &["bob@lan.test"], &m6.data())
        .unwrap_or_else(|e| panic!("LMTP over the unix socket: {e}\n{}", dovecot.log()));
    unix.quit();
    assert_saved(&d6, &["bob@lan.test"], &dovecot);

    let alice = dovecot.messages("alice", "INBOX");
    let bob = dovecot.messages("bob", "INBOX");
    let context = format!("alice: {alice:#?}\nbob: {bob:#?}\n{}", dovecot.log());
    assert_eq!(
        dovecot.message_ids("alice", "INBOX"),
        sorted_ids([&m1, &m3, &m4]),
        "{context}"
    );
    assert_eq!(
        dovecot.message_ids("bob", "INBOX"),
        sorted_ids([&m2, &m3, &m6]),
        "{context}"
    );
    assert_eq!(dovecot.count("alice", "INBOX"), 3);
    assert!(
        alice.iter().chain(&bob).all(|m| m.flags == ["\\Recent"]),
        "fresh LMTP mail is \\Recent only\n{context}"
    );
    // Dovecot writes Delivered-To only when one transaction has one recipient: the two-recipient
    // message is one file hard-linked into both Maildirs.
    let by_id = |list: &[DovecotMessage], m: &Message| {
        list.iter()
            .find(|x| x.message_id == m.message_id)
            .cloned()
            .unwrap_or_else(|| panic!("{} missing\n{context}", m.message_id))
    };
    assert_eq!(
        by_id(&alice, &m1).delivered_to,
        "alice@lan.test",
        "{context}"
    );
    assert_eq!(by_id(&bob, &m2).delivered_to, "bob", "{context}");
    assert_eq!(by_id(&alice, &m3).delivered_to, "", "{context}");
    let file_of = |user: &str, m: &Message| {
        Maildir::new(dovecot.maildir(user))
            .new_messages()
            .into_iter()
            .find(|f| f.message_id.as_deref() == Some(m.message_id.as_str()))
            .unwrap_or_else(|| panic!("no file of {} in {user}'s new/", m.message_id))
            .path
    };
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        inode(&file_of("alice", &m3)),
        inode(&file_of("bob", &m3)),
        "one file for both recipients, hard-linked"
    );
    assert_eq!(by_id(&alice, &m1).subject, "lan 1", "{context}");

    // Stopped: nothing answers, and sessions open at the time are cut (an IMAP session process
    // would otherwise outlive the master by 10 s). Started again: the same mail, and it takes more.
    let mut open_imap = dovecot.imap("alice");
    open_imap.select("INBOX").unwrap();
    let mut open_lmtp = dovecot.lmtp();
    let stopping = Instant::now();
    dovecot.stop();
    let stop_time = stopping.elapsed();
    assert!(!dovecot.is_running());
    assert!(
        stop_time < Duration::from_secs(8),
        "stop took {stop_time:?}: a lingering session was waited for"
    );
    let imap_after = open_imap.command("NOOP");
    assert!(
        imap_after.is_err(),
        "the IMAP session open during stop must be gone, got {imap_after:?}"
    );
    let lmtp_after = open_lmtp.command("MAIL FROM:<x@outside.test>");
    assert!(
        lmtp_after.as_ref().map_or(true, |r| r.code == 421),
        "the LMTP session open during stop must be gone (or say 421), got {lmtp_after:?}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", dovecot.lmtp_port())).is_err()
            && std::net::TcpStream::connect(("127.0.0.1", dovecot.imap_port())).is_err(),
        "a stopped Dovecot must not answer"
    );
    let restarting = Instant::now();
    dovecot.start_again();
    let restart_time = restarting.elapsed();
    assert_eq!(
        dovecot.message_ids("bob", "INBOX"),
        sorted_ids([&m2, &m3, &m6])
    );
    let m7 = lan_message(7, "alice@lan.test");
    assert_saved(
        &dovecot.deliver(&m7, &["alice@lan.test"]),
        &["alice@lan.test"],
        &dovecot,
    );
    assert_eq!(dovecot.count("alice", "INBOX"), 4);
    // A crash (SIGKILL to everything) and a start: still the same mail.
    dovecot.kill();
    dovecot.start_again();
    assert_eq!(dovecot.count("alice", "INBOX"), 4);
    eprintln!(
        "dovecot: start {start_time:?}, stop {stop_time:?}, start again {restart_time:?}; \
         unknown user: {}; sessions open at stop: IMAP {imap_after:?}, LMTP {lmtp_after:?}",
        refused.map(|r| r.to_string()).unwrap_or_default()
    );
}

/// Queues `messages` at the ISP, fetches them with Mailcall into `maildir` and checks the run.
fn fetch_into(
    cli: &Cli,
    isp: &PostfixIsp,
    listen_port: u16,
    maildir: &Path,
    messages: &[Message],
) -> mailcall_e2e::CliOutput {
    isp.queue_all(messages);
    isp.wait_deferred(messages.len(), Duration::from_secs(30));
    let out = fetch(cli, listen_port, maildir, &[]);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");
    assert!(
        out.stdout
            .contains(&format!("summary: {} message(s)", messages.len())),
        "expected `summary: {} message(s)`\n{context}",
        messages.len()
    );
    isp.wait_queue_empty(Duration::from_secs(10));
    out
}

fn numbered(domain: &str, range: std::ops::Range<usize>) -> Vec<Message> {
    range.map(|n| Message::numbered(domain, n)).collect()
}

#[test]
fn dovecot_reads_the_maildir_a_real_fetch_wrote_and_mailcall_writes_on_after_imap_moved_it() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["example.org"], lp));
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_plain_account(&cli, "isp", isp.port(), &["example.org"]);
    let maildir = Maildir::new(env.root().join("Maildir"));

    let first = numbered("example.org", 0..10);
    fetch_into(&cli, &isp, lp, maildir.path(), &first);
    assert_eq!(maildir.new_messages().len(), 10);

    let dovecot =
        Dovecot::start(DovecotOptions::no_users().with_user_maildir("carol", maildir.path()));
    dovecot.hand_over("carol");

    // doveadm: exactly those ten, each once, new (\Recent) and unread (no \Seen).
    let seen = dovecot.messages("carol", "INBOX");
    let context = format!("{seen:#?}\n{}", dovecot.log());
    assert_eq!(dovecot.count("carol", "INBOX"), 10, "{context}");
    assert_eq!(
        dovecot.message_ids("carol", "INBOX"),
        sorted_ids(&first),
        "{context}"
    );
    for m in &first {
        let got = seen
            .iter()
            .find(|s| s.message_id == m.message_id)
            .unwrap_or_else(|| panic!("{} missing\n{context}", m.message_id));
        assert_eq!(got.subject, m.subject, "{context}");
        assert_eq!(
            got.flags,
            ["\\Recent"],
            "mail in new/ is \\Recent, not \\Seen\n{context}"
        );
    }

    // IMAP, read-only first: the bytes are the file's, and nothing moves.
    let mut imap = dovecot.imap("carol");
    let examined = imap.examine("INBOX").unwrap();
    assert!(
        examined.read_only && examined.exists == 10 && examined.recent == 10,
        "{examined:?}"
    );
    let (size, body) = imap.fetch_message(1).unwrap();
    let id = mailcall_e2e::maildir::header(&String::from_utf8_lossy(&body), "message-id")
        .expect("the fetched message has a Message-ID");
    let file = maildir
        .new_messages()
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(id.as_str()))
        .unwrap_or_else(|| panic!("no file in new/ holds {id}"));
    let on_disk = std::fs::read(&file.path).unwrap();
    assert!(
        body == on_disk,
        "IMAP BODY[] of {id} differs from {}",
        file.path.display()
    );
    assert_eq!(size, on_disk.len() as u64, "RFC822.SIZE of {id}");
    assert_eq!(
        count_files(&maildir.path().join("new")),
        10,
        "EXAMINE moves nothing"
    );
    imap.logout().unwrap();

    // SELECT: Dovecot takes \Recent and moves every file to cur/ with `:2,`.
    let mut imap = dovecot.imap("carol");
    let selected = imap.select("INBOX").unwrap();
    assert!(
        !selected.read_only && selected.exists == 10 && selected.recent == 10,
        "{selected:?}"
    );
    assert!(imap
        .fetch_flags()
        .unwrap()
        .iter()
        .all(|m| m.flags == ["\\Recent"]));
    imap.logout().unwrap();
    assert_eq!(count_files(&maildir.path().join("new")), 0);
    let cur = maildir.files("cur");
    assert_eq!(cur.len(), 10, "{cur:?}");
    assert!(
        cur.iter().all(|p| p.to_string_lossy().ends_with(":2,")),
        "{cur:?}"
    );
    assert!(dovecot
        .messages("carol", "INBOX")
        .iter()
        .all(|m| m.flags.is_empty()));

    // Mailcall's next fetch goes into the same Maildir, now with Dovecot's files in it.
    let second = numbered("example.org", 10..13);
    fetch_into(&cli, &isp, lp, maildir.path(), &second);
    assert_eq!(
        maildir.message_ids(),
        sorted_ids(&second),
        "new/ holds the new mail"
    );
    assert_eq!(maildir.files("cur").len(), 10, "cur/ is untouched");
    dovecot.hand_over("carol");
    let all = dovecot.messages("carol", "INBOX");
    let flags = flags_by_id(&all);
    let context = format!("{all:#?}\n{}", dovecot.log());
    assert_eq!(
        dovecot.message_ids("carol", "INBOX"),
        sorted_ids(first.iter().chain(&second)),
        "{context}"
    );
    for m in &first {
        assert!(flags[&m.message_id].is_empty(), "{context}");
    }
    for m in &second {
        assert_eq!(flags[&m.message_id], ["\\Recent"], "{context}");
    }
    let mut imap = dovecot.imap("carol");
    let selected = imap.select("INBOX").unwrap();
    assert!(
        selected.exists == 13 && selected.recent == 3,
        "{selected:?}"
    );
    imap.logout().unwrap();
}

#[test]
fn a_maildir_plus_plus_folder_mailcall_fills_is_an_imap_folder() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["example.org"], lp));
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_plain_account(&cli, "isp", isp.port(), &["example.org"]);

    // The user's Maildir exists and Dovecot serves it (one LMTP delivery made INBOX). Dovecot
    // cannot create it itself: its parent is root's.
    let root = env.root().join("Maildir");
    std::fs::create_dir(&root).unwrap();
    let dovecot = Dovecot::start(DovecotOptions::no_users().with_user_maildir("carol", &root));
    dovecot.hand_over("carol");
    let inbox_mail = lan_message(1, "carol@lan.test");
    assert_saved(
        &dovecot.deliver(&inbox_mail, &["carol@lan.test"]),
        &["carol@lan.test"],
        &dovecot,
    );

    // Mailcall fills the Maildir++ folder `.Example-org` in it.
    let folder = root.join(".Example-org");
    let mail = numbered("example.org", 0..4);
    fetch_into(&cli, &isp, lp, &folder, &mail);
    let marker = folder.join("maildirfolder").exists();
    dovecot.hand_over("carol");

    let context = dovecot.log();
    assert_eq!(
        dovecot.mailboxes("carol"),
        ["Example-org", "INBOX"],
        "{context}"
    );
    assert_eq!(
        dovecot.message_ids("carol", "Example-org"),
        sorted_ids(&mail)
    );
    assert_eq!(
        dovecot.message_ids("carol", "INBOX"),
        sorted_ids([&inbox_mail])
    );

    let mut imap = dovecot.imap("carol");
    let list = imap.list("*").unwrap();
    let entry = list
        .iter()
        .find(|e| e.name == "Example-org")
        .unwrap_or_else(|| panic!("IMAP LIST has no Example-org: {list:#?}\n{context}"));
    assert_eq!(entry.separator, Some('.'), "{entry:?}");
    assert!(
        !entry.attributes.iter().any(|a| a == "\\Noselect"),
        "{entry:?}"
    );
    assert!(
        imap.lsub("*").unwrap().is_empty(),
        "nothing is subscribed yet: LIST shows the folder, LSUB does not"
    );
    assert_eq!(
        imap.status("Example-org").unwrap(),
        MailboxStatus {
            messages: 4,
            recent: 4,
            unseen: 4
        }
    );
    let selected = imap.select("Example-org").unwrap();
    assert_eq!((selected.exists, selected.recent), (4, 4), "{selected:?}");
    imap.logout().unwrap();
    assert_eq!(
        count_files(&folder.join("cur")),
        4,
        "SELECT moved the folder's mail"
    );

    // Subscribed (the way Dovecot writes it), LSUB shows it too.
    dovecot.subscribe("carol", "Example-org");
    assert_eq!(dovecot.subscribed("carol"), ["Example-org"]);
    let mut imap = dovecot.imap("carol");
    let lsub = imap.lsub("*").unwrap();
    assert_eq!(
        lsub.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["Example-org"]
    );
    imap.logout().unwrap();
    eprintln!(
        "Mailcall's Maildir++ folder {} maildirfolder file; Dovecot listed it",
        if marker { "has a" } else { "has no" }
    );
}

#[test]
fn a_maildir_plus_plus_folder_mailcall_makes_before_the_maildir_exists_reads_too() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["example.org"], lp));
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_plain_account(&cli, "isp", isp.port(), &["example.org"]);

    // Nothing there yet: the `maildir` setting creates `Maildir/` (a bare dir, no cur/new/tmp)
    // and the folder (a `maildir:` route makes the root a Maildir too: tests/e2e/routing.rs).
    let root = env.root().join("Maildir");
    let folder = root.join(".Example-org");
    let mail = numbered("example.org", 0..3);
    fetch_into(&cli, &isp, lp, &folder, &mail);
    let mut made: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();

    let dovecot = Dovecot::start(DovecotOptions::no_users().with_user_maildir("carol", &root));
    dovecot.hand_over("carol");
    let context = format!("Mailcall made {made:?} in the Maildir\n{}", dovecot.log());
    assert_eq!(
        dovecot.mailboxes("carol"),
        ["Example-org", "INBOX"],
        "{context}"
    );
    assert_eq!(
        dovecot.message_ids("carol", "Example-org"),
        sorted_ids(&mail),
        "{context}"
    );
    assert_eq!(dovecot.count("carol", "INBOX"), 0, "{context}");
    let mut imap = dovecot.imap("carol");
    assert_eq!(imap.status("Example-org").unwrap().messages, 3);
    assert_eq!(imap.select("INBOX").unwrap().exists, 0);
    imap.logout().unwrap();

    // INBOX works afterwards: Dovecot makes its cur/new/tmp in the Maildir root on delivery.
    let inbox_mail = lan_message(1, "carol@lan.test");
    assert_saved(
        &dovecot.deliver(&inbox_mail, &["carol@lan.test"]),
        &["carol@lan.test"],
        &dovecot,
    );
    assert_eq!(
        dovecot.message_ids("carol", "INBOX"),
        sorted_ids([&inbox_mail])
    );
    assert_eq!(dovecot.count("carol", "Example-org"), 3);
    eprintln!("Mailcall made {made:?} in a Maildir that did not exist");
}
