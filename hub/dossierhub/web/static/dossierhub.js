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
