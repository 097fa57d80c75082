//! A dial-up world for the everyday tests (retry, pause, the ip-up.d recipe): a network namespace
//! whose `ppp0` exists only between [`LinkWorld::dial_in`] and [`LinkWorld::hang_up`] (as pppd
//! has it), a real Postfix ISP inside that delivers to the link's own address (so its mail waits
//! while the link is down), and `mailcall-cli daemon` inside, as root or as a throwaway user.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mailcall_e2e::process::ChildGuard;
use mailcall_e2e::{
    free_port, poll_until, Cli, IspOptions, KeyringEnv, Maildir, Message, Netns, PostfixIsp,
    TestUser,
};

/// The domain the ISP holds mail for.
pub const DOMAIN: &str = "dial.test";
/// Settle delay the daemon runs with (seconds).
pub const SETTLE: u64 = 2;
/// Idle timeout the daemon runs with (seconds).
pub const IDLE: u64 = 2;
/// The dial-up link's own address and its peer's.
pub const LOCAL: &str = "10.64.0.2";
/// The peer's address on the link.
pub const PEER: &str = "10.64.0.1";

/// How to build a [`LinkWorld`].
pub struct WorldOptions {
    /// Mail queued (and deferred) at the ISP before anything starts.
    pub queued: Vec<Message>,
    /// STARTTLS (the ISP's own CA) and AUTH for this user and password; `None`: plain.
    pub tls_auth: Option<(String, String)>,
    /// Start the ISP inside the namespace now; `false`: it stays stopped until the test calls
    /// `world.ns.start_isp(&world.isp)`.
    pub isp_running: bool,
    /// The `interfaces` filter of the daemon.
    pub interfaces: String,
    /// Everything (keyring, daemon, CLI) runs as a throwaway user instead of root.
    pub as_user: bool,
}

impl WorldOptions {
    /// `queued` waiting at a plain running ISP; the daemon watches `ppp*`; all as root.
    pub fn new(queued: &[Message]) -> Self {
        WorldOptions {
            queued: queued.to_vec(),
            tls_auth: None,
            isp_running: true,
            interfaces: "ppp*".into(),
            as_user: false,
        }
    }
}

/// The world; the daemon's guard is held by the test (declared after the world, so it drops
/// first).
pub struct LinkWorld {
    // Drop order = declaration order: the ISP, the keyring (as the user), the namespace, the
    // user's /run/user link, the user itself.
    /// The ISP (inside the namespace once running).
    pub isp: PostfixIsp,
    /// HOME, XDG dirs, bus and keyring.
    pub env: KeyringEnv,
    /// The namespace with `lo` and, while dialed in, `ppp0`.
    pub ns: Netns,
    /// `/run/user/UID` for the user, when there is one (held for its drop).
    _run_user: Option<mailcall_e2e::RunUserLink>,
    /// The throwaway user, when there is one.
    pub user: Option<TestUser>,
    /// Where the mail goes.
    pub maildir: Maildir,
    /// The config file (the platform default path, so commands without `--config` read it).
    pub config: PathBuf,
    /// The data directory (history, state.toml).
    pub data_dir: PathBuf,
    /// The daemon's log.
    pub log: PathBuf,
}

impl LinkWorld {
    /// Builds it: config, the ISP holding `options.queued`, no `ppp0` yet, no daemon yet.
    pub fn new(options: WorldOptions) -> Self {
        // The env's dirs are made for the user's ids and become its home: a user with a
        // placeholder home first.
        let user = options
            .as_user
            .then(|| TestUser::create(std::path::Path::new("/nonexistent")));
        let env = match &user {
            Some(u) => KeyringEnv::for_user(u),
            None => KeyringEnv::new(),
        };
        let run_user = user.as_ref().map(|u| u.link_run_user(&env.runtime_dir()));
        let listen_port = free_port();
        let mut isp_options = IspOptions::new(&[DOMAIN], listen_port).with_listener_host(LOCAL);
        if let Some((u, p)) = &options.tls_auth {
            isp_options = isp_options.with_tls().with_auth(u, p);
        }
        let isp = PostfixIsp::start(isp_options);
        if !options.queued.is_empty() {
            isp.queue_all(&options.queued);
            isp.wait_deferred(options.queued.len(), Duration::from_secs(30));
        }
        let maildir = Maildir::new(env.home().join("Maildir"));
        let config = env.home().join(".config/mailcall/config.toml");
        let data_dir = env.data_home().join("mailcall");
        let world_cli = Cli::with_config(&env, &config);
        world_cli.write_config(&format!(
            "hostname = \"client.test\"\nlisten = \"0.0.0.0:{listen_port}\"\nmaildir = \"{}\"\ndata-dir = \"{}\"\nidle-timeout = {IDLE}\nmax-wait = 60\ninterfaces = [\"{}\"]\nsettle-delay = {SETTLE}\n",
            maildir.path().display(),
            data_dir.display(),
            options.interfaces,
        ));
        if let Some(u) = &user {
            u.chown(&config);
        }
        let ns = Netns::new();
        if options.isp_running {
            ns.adopt_isp(&isp);
        } else {
            mailcall_e2e::netns::stop_isp(&isp);
        }
        let log = env.root().join("daemon.log");
        LinkWorld {
            isp,
            env,
            ns,
            _run_user: run_user,
            user,
            maildir,
            config,
            data_dir,
            log,
        }
    }

    /// The CLI on the world's config (as the world's user, if any).
    pub fn cli(&self) -> Cli<'_> {
        Cli::with_config(&self.env, &self.config)
    }

    /// A dial-in as pppd does it: a new `ppp0` (a new interface index), its addresses, up.
    pub fn dial_in(&self) {
        self.ns.add_tun("ppp0", LOCAL, PEER);
        self.ns.link_up("ppp0");
    }

    /// A hang-up as pppd does it: `ppp0` is deleted.
    pub fn hang_up(&self) {
        self.ns.ip(&["link", "del", "ppp0"]);
    }

    /// A command that runs `program` inside the namespace with the env's environment, as the
    /// world's user when there is one.
    pub fn ns_command(&self, program: &std::path::Path) -> Command {
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = self.ns.command("setpriv");
                c.arg(format!("--reuid={}", u.uid()))
                    .arg(format!("--regid={}", u.gid()))
                    .arg("--clear-groups")
                    .arg(program);
                c
            }
            None => self.ns.command(program),
        };
        cmd.env_clear()
            .envs(self.env.env())
            .current_dir(self.env.home());
        cmd
    }

    /// Starts `mailcall-cli daemon` inside the namespace and waits until it runs and serves
    /// its control socket.
    pub fn start_daemon(&self) -> ChildGuard {
        let cli = self.cli();
        let mut cmd = self.ns_command(cli.binary());
        cmd.env("MAILCALL_LOG", "info,mailcall_core::trigger=debug")
            .arg("--config")
            .arg(&self.config)
            .arg("daemon");
        // A log per start, so "running" is this start's line.
        let _ = std::fs::remove_file(&self.log);
        let guard = self.ns.spawn("mailcall daemon", &mut cmd, &self.log);
        let socket = self.env.runtime_dir().join("mailcall/control.sock");
        let up = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
            let log = mailcall_e2e::read_for_diagnostics(&self.log);
            (log.contains("mailcall daemon running") && socket.exists()).then_some(())
        });
        assert!(up.is_some(), "the daemon did not start\n{}", self.context());
        guard
    }

    /// Sends SIGTERM and waits for a clean exit (status 0).
    pub fn stop_daemon(&self, mut daemon: ChildGuard) {
        let pid = daemon.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
            daemon.exited()
        });
        match status {
            Some(s) => assert!(s.success(), "daemon exit {s}\n{}", self.context()),
            None => panic!("the daemon did not stop on SIGTERM\n{}", self.context()),
        }
    }

    /// The history's records (every line must parse).
    pub fn records(&self) -> Vec<serde_json::Value> {
        records_in(&self.data_dir)
    }

    /// The fetch records (not connect/disconnect/delivery) with `trigger`.
    pub fn fetches(&self, trigger: &str) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r["kind"] == "fetch" && r["trigger"] == trigger)
            .collect()
    }

    /// Waits until `done` holds for the history, or panics with `what` and the context.
    pub fn wait_history(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let ok = poll_until(timeout, Duration::from_millis(50), || {
            done(&self.records()).then_some(())
        });
        assert!(
            ok.is_some(),
            "expected {what} within {timeout:?}\n{}",
            self.context()
        );
    }

    /// Postfix logs one `disconnect from ... etrn=1` line per SMTP session that sent one ETRN:
    /// the ISP's own count of how often it was asked.
    pub fn etrn_sessions(&self) -> usize {
        std::fs::read_to_string(self.isp.dir().join("maillog"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("disconnect from") && l.contains(" etrn="))
            .count()
    }

    /// The daemon's log, the history in short, the ISP's log: for failure messages.
    pub fn context(&self) -> String {
        format!(
            "daemon log:\n{}\nhistory:\n{:#?}\nISP maillog:\n{}",
            mailcall_e2e::read_for_diagnostics(&self.log),
            self.records().iter().map(short).collect::<Vec<_>>(),
            self.isp.log()
        )
    }
}

/// The records of the history file in `data_dir`.
pub fn records_in(data_dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data_dir.join("history.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a history line is JSON"))
        .collect()
}

/// A record's attempt number (absent in the file means 1).
pub fn attempt(r: &serde_json::Value) -> u64 {
    r["attempt"].as_u64().unwrap_or(1)
}

/// One line per record for failure messages.
pub fn short(r: &serde_json::Value) -> String {
    format!(
        "{} {} {} attempt {} started {}: {} msgs, ended {}, retryable {}, errors {}",
        r["kind"],
        r["trigger"],
        r["id"],
        attempt(r),
        r["started_at"],
        r["messages"].as_array().map_or(0, |m| m.len()),
        r["ended_because"],
        r["retryable"],
        r["errors"]
    )
}

/// Time for a link to count as down for good (the settle delay plus a margin). This is the
/// behaviour under test — a link must stay down that long — not a stand-in for synchronisation.
pub fn stay_down() {
    std::thread::sleep(Duration::from_millis(SETTLE * 1000 + 700));
}
