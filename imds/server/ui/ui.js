// The fleet page's live updates: the server sends the page's live part,
// rendered as on a reload, over server-sent events whenever it changes
// (and now and then so the ages move on). Without JavaScript the page
// reloads itself instead (its <noscript> refresh).
(function () {
	"use strict";
	var live = document.getElementById("live");
	var conn = document.getElementById("conn");
	if (!live || !window.EventSource) {
		return;
	}
	var es = new EventSource(live.getAttribute("data-events"));
	var say = function (text, cls) {
		conn.textContent = text;
		conn.className = cls;
	};
	es.addEventListener("open", function () {
		say("live", "live");
	});
	es.addEventListener("update", function (ev) {
		live.innerHTML = ev.data;
		document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
		say("live", "live");
	});
	es.addEventListener("error", function () {
		say("disconnected, retrying…", "down");
	});
})();
