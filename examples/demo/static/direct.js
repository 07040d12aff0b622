// Files straight to the bucket, through the direct-upload blueprint's own script (which
// hashes with Web Crypto, or hash-wasm for large files): a progress bar for hashing and
// for sending, and the refusals of the app or the bucket in words. Once every file is
// in, the gallery reloads and shows the messages the app wrote with each row.
const form = document.getElementById("direct");
const input = document.getElementById("straight");
const bar = document.getElementById("direct-progress");
const status = document.getElementById("direct-status");
const { directUpload } = await import(form.dataset.script);

function say(text, kind) {
  status.textContent = text;
  status.className = kind || "";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = Array.from(input.files);
  if (!files.length) {
    say("Choose a file first.", "refused");
    return;
  }
  bar.hidden = false;
  const refused = [];
  for (const file of files) {
    try {
      await directUpload(file, {
        headers: { "X-CSRFToken": form.dataset.csrfToken },
        onProgress: (phase, done, total) => {
          bar.max = total;
          bar.value = done;
          say(`${file.name}: ${phase === "hash" ? "hashing" : "sending"}.`, phase);
        },
      });
    } catch (error) {
      refused.push(`${file.name}: refused. ${error.message}`);
    }
  }
  if (refused.length) {
    say(refused.join(" "), "refused");
  } else {
    window.location.reload();
  }
});
