// Progressive enhancement for the status page: poll the JSON status instead of reloading every 3 s.
(function () {
  "use strict";
  var box = document.getElementById("status");
  if (!box || !box.dataset.poll || !window.fetch) { return; }
  var meta = document.querySelector('meta[http-equiv="refresh"]');
  if (meta) { meta.parentNode.removeChild(meta); }
  var url = box.dataset.poll;
  var current = box.dataset.status;
  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        // A link problem (locked after the last wrong password, withdrawn...): show its page.
        if (r.status >= 400 && r.status < 500) { return { status: "link_problem" }; }
        return r.ok ? r.json() : null;
      })
      .then(function (body) {
        if (body && body.status !== current) { window.location.replace(url); return; }
        window.setTimeout(poll, 1500);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();
