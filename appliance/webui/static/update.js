// The update page: send the bundle as the request body with a progress bar, then follow
// the installation. Every text comes from the page (its language); none is written here.
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const file = document.getElementById("bundle").files[0];
      if (!file) { return; }
      const bar = document.getElementById("upload-progress");
      const error = document.getElementById("upload-error");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.dataset.url);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("X-CSRF-Token", form.querySelector("[name=csrf_token]").value);
      bar.hidden = false;
      error.hidden = true;
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) { bar.value = Math.round((100 * e.loaded) / e.total); }
      });
      xhr.addEventListener("load", () => {
        let answer = {};
        try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = {}; }
        if (xhr.status === 200 && answer.ok) { window.location.reload(); return; }
        bar.hidden = true;
        error.textContent = answer.error || xhr.statusText;
        error.hidden = false;
      });
      xhr.addEventListener("error", () => {
        bar.hidden = true;
        error.textContent = xhr.statusText || String(xhr.status);
        error.hidden = false;
      });
      xhr.send(file);
    });
  }

  const install = document.getElementById("install");
  if (install) {
    const bar = document.getElementById("install-progress");
    const message = document.getElementById("install-message");
    const poll = () => {
      fetch(install.dataset.url, { credentials: "same-origin" })
        .then((r) => r.json())
        .then((p) => {
          bar.value = p.percent;
          if (p.state === "installing") {
            message.textContent = p.message;
            window.setTimeout(poll, 1000);
          } else if (p.state === "done") {
            message.textContent = install.dataset.done;
            window.setTimeout(poll, 5000);
          } else {
            window.location.reload();
          }
        })
        .catch(() => window.setTimeout(poll, 5000)); // rebooting: try again
    };
    poll();
  }
})();
