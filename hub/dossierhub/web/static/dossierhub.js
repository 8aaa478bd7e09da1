// Live status of a report run: poll the API while it is queued or running, then reload.
(function () {
  "use strict";
  const box = document.getElementById("run-status");
  if (!box || !["queued", "running"].includes(box.dataset.status)) {
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
    const current = run.provenance.status;
    if (current !== "queued" && current !== "running") {
      window.location.reload();
      return;
    }
    status.textContent = current;
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
