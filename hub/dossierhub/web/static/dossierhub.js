// Times in the reader's own time zone: the server wrote each <time data-when="moment"> in the
// installation's zone (web/dates.py); here it is written again in the browser's, in the same
// form ("1 Dec 2026, 07:11"), with the zone's name on hover. Dates (an expiry) are left alone.
(function () {
  "use strict";
  const local = new Intl.DateTimeFormat("en-GB", {
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  const full = new Intl.DateTimeFormat("en-GB", { dateStyle: "full", timeStyle: "long" });
  for (const node of document.querySelectorAll('time[data-when="moment"]')) {
    const moment = new Date(node.getAttribute("datetime"));
    if (!Number.isNaN(moment.getTime())) {
      node.textContent = local.format(moment);
      node.title = full.format(moment);
    }
  }
})();

// Live status of a report run: poll the API while the run is in progress (the API's
// `in_progress`, decided by the server), then reload.
(function () {
  "use strict";
  const box = document.getElementById("run-status");
  if (!box || box.dataset.inProgress !== "true") {
    return;
  }
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const status = document.getElementById("status");
  async function poll() {
    let run;
    try {
      // JupyterHub's xsrf rule: a cookie-authenticated fetch carries the page's xsrf token
      const response = await fetch(box.dataset.api, {
        credentials: "same-origin",
        headers: { "X-XSRFToken": window.jhdata.xsrf_token },
      });
      if (!response.ok) {
        throw new Error(response.statusText);
      }
      run = await response.json();
    } catch (error) {
      window.setTimeout(poll, 3000);
      return;
    }
    if (!run.in_progress) {
      window.location.reload();
      return;
    }
    status.textContent = run.provenance.status;
    const progress = run.progress;
    if (progress && progress.cells_total) {
      bar.style.width = Math.round((100 * progress.cells_done) / progress.cells_total) + "%";
      bar.parentElement.setAttribute("aria-valuenow", progress.cells_done);
      bar.parentElement.setAttribute("aria-valuemax", progress.cells_total);
      text.textContent = progress.cells_done + " of " + progress.cells_total + " cells";
    }
    window.setTimeout(poll, 700);
  }
  window.setTimeout(poll, 500);
})();
