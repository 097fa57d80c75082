// The window's contract with Rust: the commands it may call, the events it hears, the fields of
// the forms it sends and the ports an ISP usually offers. Generated from src-tauri/src/contract.rs:
// do not edit; `MAILCALL_WRITE_CONTRACT=1 cargo test -p mailcall contract` writes it anew.

// The commands (src-tauri/src/commands.rs).
export const COMMANDS = Object.freeze({
  LOAD_SETTINGS: "load_settings",
  SAVE_SETTINGS: "save_settings",
  SAVE_ACCOUNT: "save_account",
  REMOVE_ACCOUNT: "remove_account",
  TEST_CONNECTION: "test_connection",
  HISTORY: "history",
  FETCH_NOW: "fetch_now",
  LOAD_DELIVERY: "load_delivery",
  ADD_ROUTE: "add_route",
  REMOVE_ROUTE: "remove_route",
  SAVE_DELIVERY: "save_delivery",
  LOAD_QUEUE: "load_queue",
  QUEUE_ACTION: "queue_action",
});

// The events Mailcall sends the window.
export const EVENTS = Object.freeze({
  STATUS: "mailcall://status",
  HISTORY: "mailcall://history",
  QUEUE: "mailcall://queue",
  SHOW_TAB: "mailcall://show-tab",
  NOTICE: "mailcall://notice",
});

// The fields of each form the window sends; a refused value comes back under its field.
export const FIELDS = Object.freeze({
  ACCOUNT: Object.freeze({
    ORIGINAL: "original",
    NAME: "name",
    MODE: "mode",
    HOST: "host",
    PORT: "port",
    SECURITY: "security",
    USERNAME: "username",
    PASSWORD: "password",
    HELO: "helo",
    CA_FILE: "ca_file",
    DOMAINS: "domains",
    CONNECT_COMMAND: "connect_command",
    DISCONNECT_COMMAND: "disconnect_command",
    LINK_TIMEOUT: "link_timeout",
    SMARTHOST_HOST: "smarthost_host",
    SMARTHOST_PORT: "smarthost_port",
    SMARTHOST_SECURITY: "smarthost_security",
    SMARTHOST_LOGIN: "smarthost_login",
    SMARTHOST_USERNAME: "smarthost_username",
    SMARTHOST_PASSWORD: "smarthost_password",
    SMARTHOST_CA_FILE: "smarthost_ca_file",
    SMARTHOST_AUTH: "smarthost_auth",
  }),
  DOMAIN_ROW: Object.freeze({
    NAME: "name",
    FORM: "form",
  }),
  SETTINGS: Object.freeze({
    LISTEN: "listen",
    MAILDIR: "maildir",
    IDLE_TIMEOUT: "idle_timeout",
    MAX_SIZE_MIB: "max_size_mib",
    NOTIFICATIONS: "notifications",
    START_AT_LOGIN: "start_at_login",
    PAUSED: "paused",
    INTERFACES: "interfaces",
    SETTLE_DELAY: "settle_delay",
    FETCH_INTERVAL: "fetch_interval",
    FETCH_AT_START: "fetch_at_start",
    SUBMIT_LISTEN: "submit_listen",
    SUBMIT_ALLOWED_PEERS: "submit_allowed_peers",
    SUBMIT_USER: "submit_user",
    DEFAULT_OUTGOING_ACCOUNT: "default_outgoing_account",
    SEND_RETRY_DELAY: "send_retry_delay",
    SEND_MAX_RETRY_DELAY: "send_max_retry_delay",
    MAX_QUEUE_LIFETIME: "max_queue_lifetime",
    DELAY_WARNING: "delay_warning",
    SUBMIT_PASSWORD: "submit_password",
  }),
  DELIVERY: Object.freeze({
    UNKNOWN_RECIPIENTS: "unknown_recipients",
    RETRY_DELAY: "retry_delay",
    MAX_RETRY_DELAY: "max_retry_delay",
  }),
  ROUTE: Object.freeze({
    RECIPIENT: "recipient",
    DESTINATION: "destination",
    SECURITY: "security",
    CA_FILE: "ca_file",
  }),
});

// The port an ISP usually offers, by mode and security (the account form's placeholder).
export const DEFAULT_PORTS = Object.freeze({
  etrn: Object.freeze({ none: 25, starttls: 25, tls: 465 }),
  odmr: Object.freeze({ none: 366, starttls: 366, tls: 366 }),
});

// The port an outgoing (submission) server usually has, by security (its port's placeholder).
export const SMARTHOST_PORTS = Object.freeze({ none: 25, starttls: 587, tls: 465 });
