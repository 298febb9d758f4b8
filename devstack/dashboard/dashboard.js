// The local dev dashboard: plain JavaScript over the real agents API (same origin, local token).
(function () {
  "use strict";
  var token = document.querySelector('meta[name="api-token"]').content;
  var headers = { Authorization: "Bearer " + token, "Content-Type": "application/json" };
  var tbody = document.querySelector("#agents tbody");
  // The statuses the API accepts a resend in (409 otherwise).
  var RESENDABLE = ["invite_pending", "invited", "invite_failed", "failed"];

  function api(method, path, body) {
    return fetch(path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        if (r.status === 204) { return null; }
        return r.json().then(function (json) {
          if (!r.ok) { var e = json.error || {}; throw new Error((e.message || r.status) + detailText(e.details)); }
          return json;
        });
      });
  }
  function detailText(details) {
    if (!details || !details.length) { return ""; }
    return ": " + details.map(function (d) { return (d.field ? d.field + " " : "") + d.message; }).join("; ");
  }
  function cell(text, cls) { var td = document.createElement("td"); td.textContent = text; if (cls) { td.className = cls; } return td; }
  function button(label, onClick) { var b = document.createElement("button"); b.type = "button"; b.textContent = label; b.className = "small"; b.onclick = onClick; return b; }

  function render(items) {
    tbody.textContent = "";
    items.forEach(function (agent) {
      var tr = document.createElement("tr");
      tr.dataset.agentId = agent.agentId;
      tr.dataset.status = agent.status;
      tr.appendChild(cell(agent.name));
      tr.appendChild(cell(agent.email));
      var status = cell(agent.status + (agent.statusReason ? " (" + agent.statusReason + ")" : ""), "status");
      tr.appendChild(status);
      tr.appendChild(cell(agent.status === "verified" ? "✔" : "", "tick"));
      var actions = document.createElement("td");
      if (RESENDABLE.indexOf(agent.status) >= 0) {
        actions.appendChild(button("Resend invite", function () { api("POST", "/agents/" + agent.agentId + "/invite").then(load, alertError); }));
      }
      actions.appendChild(button("Remove", function () { api("DELETE", "/agents/" + agent.agentId).then(load, alertError); }));
      tr.appendChild(actions);
      tbody.appendChild(tr);
    });
  }
  function alertError(e) { document.getElementById("add-error").textContent = e.message; }
  function load() {
    var all = [];
    function page(next) {
      return api("GET", "/agents?limit=100" + (next ? "&nextToken=" + encodeURIComponent(next) : "")).then(function (body) {
        all = all.concat(body.items);
        return body.nextToken ? page(body.nextToken) : all;
      });
    }
    return page(null).then(render, alertError);
  }
  document.getElementById("add-agent").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    document.getElementById("add-error").textContent = "";
    api("POST", "/agents", { name: form.name.value, email: form.email.value, type: form.type.value })
      .then(function () { form.reset(); return load(); }, alertError);
  });
  document.getElementById("refresh").onclick = load;
  load();
  window.setInterval(load, 2000);
})();
