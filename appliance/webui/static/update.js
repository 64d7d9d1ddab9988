// The update page: send the bundle in pieces with a progress bar, have it checked, then
// follow the installation. Every text comes from the page (its language); none is here.
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  if (form) {
    const token = () => form.querySelector("[name=csrf_token]").value;
    const post = (url, body) => fetch(url, {
      method: "POST", credentials: "same-origin", body: body,
      headers: { "Content-Type": "application/octet-stream", "X-CSRF-Token": token() },
    }).then((r) => r.json().catch(() => ({ error: r.statusText || String(r.status) })));

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = document.getElementById("bundle").files[0];
      if (!file) { return; }
      const bar = document.getElementById("upload-progress");
      const error = document.getElementById("upload-error");
      const chunk = Number(form.dataset.chunk);
      const fail = (text) => { bar.hidden = true; error.textContent = text; error.hidden = false; };
      bar.hidden = false;
      error.hidden = true;
      try {
        for (let offset = 0; offset < file.size; offset += chunk) {
          const answer = await post(`${form.dataset.url}?offset=${offset}`,
                                    file.slice(offset, offset + chunk));
          if (!answer.ok) { fail(answer.error); return; }
          bar.value = Math.round((100 * answer.received) / file.size);
        }
        const checked = await post(form.dataset.check, null);
        if (!checked.ok) { fail(checked.error); return; }
        window.location.reload();
      } catch (e) {
        fail(String(e));
      }
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
