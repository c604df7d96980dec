// berth web UI: the only script. Copy buttons put their data-copy text on
// the clipboard and say so; everything else works without script.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button || !navigator.clipboard) return;
  navigator.clipboard.writeText(button.dataset.copy).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// The retention editor's live plan: as the policy is typed, the form (with
// its CSRF field) is posted to the preview address and the plan it
// answers put in place. Without script the "Preview" button does this.
const editor = document.getElementById("retention-form");
if (editor) {
  const plan = document.getElementById("plan");
  let timer;
  let asked = 0;
  editor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const mine = ++asked;
      fetch(editor.dataset.preview, {
        method: "POST",
        body: new URLSearchParams(new FormData(editor)),
        credentials: "same-origin",
      })
        .then((r) => (r.ok ? r.text() : null))
        .then((html) => {
          if (html !== null && mine === asked) plan.innerHTML = html;
        });
    }, 400);
  });
}
