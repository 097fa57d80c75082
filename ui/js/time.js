// One way to write a time in the whole window (status line, History, the queue's next try):
// the user's locale, date and time to the minute.
const FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export const when = (iso) => FORMAT.format(new Date(iso));
