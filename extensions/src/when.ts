/**
 * Times in the panel as on the dossierhub pages (hub/dossierhub/web/dates.py): the reader's
 * own time zone, "1 Dec 2026, 07:11", in a <time> that keeps the moment itself; the zone's
 * name on hover. A text that is not a time is shown as it came.
 */

const LOCAL = new Intl.DateTimeFormat('en-GB', {
  day: 'numeric',
  month: 'short',
  year: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  hour12: false
});
// dateStyle and timeStyle are newer than the ES2019 lib the panel is typed against
const FULL = new Intl.DateTimeFormat('en-GB', {
  dateStyle: 'full',
  timeStyle: 'long'
} as Intl.DateTimeFormatOptions);

/** `<time datetime="ISO">1 Dec 2026, 07:11</time>`, or the text itself if it is no time. */
export function when(iso: string | null | undefined): Node | string {
  if (!iso) {
    return '';
  }
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) {
    return iso;
  }
  const node = document.createElement('time');
  node.dateTime = moment.toISOString();
  node.dataset.when = 'moment';
  node.textContent = LOCAL.format(moment);
  node.title = FULL.format(moment);
  return node;
}

const CLOCK = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', hour12: false });
const DAY = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short' });

/** The same `<time>`, shorter for a cell's margin: "14:02" today, "1 Dec, 14:02" this year,
 * else the full form; the whole moment on hover as in `when`. */
export function whenShort(iso: string, now: Date = new Date()): Node | string {
  const node = when(iso);
  if (!(node instanceof HTMLTimeElement)) {
    return node;
  }
  const moment = new Date(iso);
  if (moment.toDateString() === now.toDateString()) {
    node.textContent = CLOCK.format(moment);
  } else if (moment.getFullYear() === now.getFullYear()) {
    node.textContent = `${DAY.format(moment)}, ${CLOCK.format(moment)}`;
  }
  return node;
}
