// herald console: refresh the elements that carry data-poll while their
// content says it is not final, and keep focus where it was.
(function () {
  "use strict";
  function poll(el) {
    var every = parseInt(el.getAttribute("data-every") || "1500", 10);
    var timer = setInterval(function () {
      if (document.hidden) { return; }
      fetch(el.getAttribute("data-poll"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var open = Array.prototype.map.call(el.querySelectorAll("details[open] .muted"), function (d) { return d.textContent; });
          var tmp = document.createElement("div");
          tmp.innerHTML = html;
          if (el.contains(document.activeElement)) { return; }
          el.replaceChildren.apply(el, Array.prototype.slice.call(tmp.childNodes));
          el.querySelectorAll("details").forEach(function (d) {
            var m = d.querySelector(".muted");
            if (m && open.indexOf(m.textContent) >= 0) { d.open = true; }
          });
          if (el.id === "timeline" && !/refreshing while/.test(html)) {
            clearInterval(timer);
            el.removeAttribute("aria-live");
          }
        })
        .catch(function () {});
    }, every);
  }
  document.querySelectorAll("[data-poll]").forEach(poll);
})();
