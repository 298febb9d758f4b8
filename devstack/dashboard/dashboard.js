// The local dev dashboard: plain JavaScript over the real agents API (same origin, local token).
(function () {
  "use strict";
  var token = document.querySelector('meta[name="api-token"]').content;
  var headers = { Authorization: "Bearer " + token, "Content-Type": "application/json" };
  var tbody = document.querySelector("#agents tbody");
  // The statuses the API accepts a resend in (409 otherwise).
  var RESENDABLE = ["invite_pending", "invited", "invite_failed", "failed"];
  var STATUS_LABELS = {
    invite_pending: "Sending invite…",
    invited: "Invite sent",
    invite_failed: "Invite not sent",
    invite_bounced: "Invite bounced",
    connecting: "Connecting…",
    needs_settings: "Needs settings",
    verified: "Connected",
    failed: "Failed"
  };
  // Short words for the verdicts the workflow records (the owner's page explains them in full).
  var REASON_LABELS = {
    auth_failed: "wrong password",
    autodiscover_failed: "server not found automatically",
    mailbox_not_found: "unknown address",
    access_denied: "no access to this mailbox",
    account_locked: "account locked",
    modern_auth_required: "Microsoft 365 needs Microsoft sign-in",
    unreachable: "server unreachable",
    tls_error: "certificate problem",
    timeout: "server did not answer",
    server_busy: "server busy, try later",
    blocked_address: "private server address",
    settings_timeout: "settings never entered",
    internal_error: "error on our side"
  };
  var confirming = null; // the agent whose removal waits for "Yes, remove" (kept across refreshes)

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
  function statusLabel(agent) {
    var label = STATUS_LABELS[agent.status] || agent.status.replace(/_/g, " ");
    var reason = agent.statusReason;
    if (reason && agent.status !== "verified") {
      label += ": " + (REASON_LABELS[reason] || reason.replace(/_/g, " "));
    }
    return label;
  }
  function cell(label, text, cls) {
    var td = document.createElement("td");
    td.dataset.label = label;
    td.textContent = text;
    if (cls) { td.className = cls; }
    return td;
  }
  function button(label, onClick, cls) {
    var b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.className = "small" + (cls ? " " + cls : ""); b.onclick = onClick;
    return b;
  }

  function actionsFor(agent) {
    var actions = document.createElement("td");
    actions.className = "actions";
    if (confirming === agent.agentId) {
      var question = document.createElement("span");
      question.className = "confirm";
      question.setAttribute("role", "alert");
      question.textContent = "Remove " + agent.name + "? Monitoring stops and the stored password is deleted.";
      actions.appendChild(question);
      actions.appendChild(button("Yes, remove", function () {
        confirming = null;
        api("DELETE", "/agents/" + agent.agentId).then(load, alertError);
      }, "danger"));
      actions.appendChild(button("Cancel", function () { confirming = null; load(); }));
      return actions;
    }
    if (RESENDABLE.indexOf(agent.status) >= 0) {
      actions.appendChild(button("Resend invite", function () { api("POST", "/agents/" + agent.agentId + "/invite").then(load, alertError); }));
    }
    actions.appendChild(button("Remove", function () { confirming = agent.agentId; load(); }));
    return actions;
  }

  function render(items) {
    tbody.textContent = "";
    if (!items.some(function (a) { return a.agentId === confirming; })) { confirming = null; }
    items.forEach(function (agent) {
      var tr = document.createElement("tr");
      tr.dataset.agentId = agent.agentId;
      tr.dataset.status = agent.status;
      tr.appendChild(cell("Name", agent.name));
      tr.appendChild(cell("Email", agent.email, "email"));
      var status = cell("Status", statusLabel(agent), "status status-" + agent.status);
      status.title = agent.status + (agent.statusReason ? " (" + agent.statusReason + ")" : "");
      if (agent.status === "verified") {
        var tick = document.createElement("span");
        tick.className = "tick";
        tick.textContent = " ✔";
        tick.setAttribute("aria-label", "verified");
        status.appendChild(tick);
      }
      tr.appendChild(status);
      tr.appendChild(actionsFor(agent));
      tbody.appendChild(tr);
    });
    document.getElementById("empty").hidden = items.length > 0;
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
