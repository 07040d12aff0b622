// Big files through tus (tus-js-client, served from node_modules by the app): a progress
// bar, and a resume after a reload or a dropped connection. tus-js-client remembers each
// upload's URL in localStorage, keyed by the file's name, type, size and date, so that
// choosing the same file again continues where it stopped.
(function () {
  "use strict";
  const form = document.getElementById("resumable");
  if (!form || !window.tus) return;
  const input = document.getElementById("big");
  const bar = document.getElementById("progress");
  const status = document.getElementById("resumable-status");
  const chunkSize = Number(form.dataset.chunkSize);

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  function mib(bytes) {
    return (bytes / 1048576).toFixed(1) + " MiB";
  }

  function send(file) {
    return new Promise(function (resolve, reject) {
      const upload = new tus.Upload(file, {
        endpoint: form.action,
        chunkSize: chunkSize,
        retryDelays: [0, 1000, 3000],
        removeFingerprintOnSuccess: true,
        metadata: {filename: file.name, filetype: file.type},
        headers: {"X-CSRFToken": form.dataset.csrfToken},
        onProgress: function (sent, total) {
          bar.max = total;
          bar.value = sent;
        },
        onError: reject,
        onSuccess: resolve,
      });
      upload.findPreviousUploads().then(function (previous) {
        if (previous.length) {
          upload.resumeFromPreviousUpload(previous[0]);
          say(file.name + ": resuming an earlier upload.", "resuming");
        } else {
          say(file.name + ": uploading.", "uploading");
        }
        upload.start();
      });
    });
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const files = Array.from(input.files);
    if (!files.length) {
      say("Choose a file first.", "refused");
      return;
    }
    bar.hidden = false;
    try {
      for (const file of files) {
        await send(file);
      }
    } catch (error) {
      const reply = error.originalResponse;
      const reason = reply ? reply.getBody() : "the connection dropped";
      say("Stopped: " + reason.trim() + " Choose the file again to resume.", "refused");
      return;
    }
    window.location.reload();
  });
})();
