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

// "Sign in as DOMAIN\user" after a refusal in doubt: fill the username (advanced settings) in place instead of
// reloading the page with ?login=suggested (what the button does without JavaScript).
(function () {
  "use strict";
  var offer = document.getElementById("suggested-login");
  if (!offer) { return; }
  offer.addEventListener("submit", function (event) {
    var username = document.getElementById("username");
    var password = document.getElementById("password");
    if (!username || !password) { return; }
    event.preventDefault();
    username.value = offer.dataset.login;
    var details = username.closest("details");
    if (details) { details.open = true; }
    var note = document.createElement("p");
    note.className = "note";
    note.id = "suggested-login-applied";
    note.appendChild(document.createTextNode("The username below is now "));
    var strong = document.createElement("strong");
    strong.textContent = offer.dataset.login;
    note.appendChild(strong);
    note.appendChild(document.createTextNode(". Enter your password again and try."));
    offer.parentNode.replaceChild(note, offer);
    password.focus();
  });
})();
