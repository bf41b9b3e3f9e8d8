// taxinbox web view: the few lines of script that help where present; every page works without them.
// A button with data-copy="ID" copies the text of the element ID (the calendar link).
document.addEventListener("click", function (e) {
  var b = e.target.closest("button[data-copy]");
  if (!b) return;
  var el = document.getElementById(b.getAttribute("data-copy"));
  if (!el || !navigator.clipboard) return;
  navigator.clipboard.writeText(el.value || el.textContent).then(function () {
    b.textContent = "Скопировано";
  });
});
