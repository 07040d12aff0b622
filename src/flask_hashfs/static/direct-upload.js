// The browser's side of flask_hashfs.direct_uploads: hash the file, ask the app for a
// presigned PUT, send the bytes straight to the bucket, and tell the app they arrived.
//
// Files up to ONE_SHOT_LIMIT are hashed by Web Crypto, which digests a whole buffer at
// once; larger ones in chunks by hash-wasm, whose sha256.umd.min.js the page loads
// first (it defines globalThis.hashwasm), so that a file of any size is hashed in a few
// MiB of memory.

export const ONE_SHOT_LIMIT = 32 * 1024 * 1024;
const CHUNK = 8 * 1024 * 1024;
// The blueprint that serves this script from <prefix>/static/: the default endpoint.
const BLUEPRINT = new URL("..", import.meta.url).href.replace(/\/$/, "");

/** A refusal by the app or the bucket: `status` is the HTTP status, 0 for no answer. */
export class UploadError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "UploadError";
    this.status = status;
  }
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The lowercase hex SHA-256 of `file`; `onProgress(bytesHashed)` as it goes. */
export async function sha256Hex(file, onProgress = () => {}) {
  if (file.size <= ONE_SHOT_LIMIT && globalThis.crypto?.subtle) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    onProgress(file.size);
    return hex(digest);
  }
  if (!globalThis.hashwasm) {
    throw new UploadError(0, "Files this large need hash-wasm: load its sha256.umd.min.js first.");
  }
  const hasher = await globalThis.hashwasm.createSHA256();
  hasher.init();
  for (let offset = 0; offset < file.size; offset += CHUNK) {
    hasher.update(new Uint8Array(await file.slice(offset, offset + CHUNK).arrayBuffer()));
    onProgress(Math.min(offset + CHUNK, file.size));
  }
  return hasher.digest("hex");
}

async function postJSON(url, data, headers) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(data),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new UploadError(response.status, answer.error || response.statusText);
  }
  return answer;
}

function putToBucket(url, headers, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("PUT", url);
    for (const [name, value] of Object.entries(headers)) {
      // The browser sets Content-Length itself, to the file's size: the signed value.
      if (name.toLowerCase() !== "content-length") request.setRequestHeader(name, value);
    }
    request.upload.onprogress = (event) => onProgress(event.loaded);
    request.onload = () => {
      if (request.status >= 200 && request.status < 300) resolve();
      else reject(new UploadError(request.status, "The storage refused the file."));
    };
    request.onerror = () => reject(new UploadError(0, "The storage could not be reached."));
    // A slice has no type: the browser sends no Content-Type of the client's choosing.
    request.send(file.slice(0, file.size));
  });
}

/**
 * Upload `file` through the blueprint registered at `endpoint` (its url_prefix).
 *
 * @param {File} file
 * @param {object} options
 * @param {string} [options.endpoint]  e.g. "/direct-uploads"; by default the prefix
 *   of the blueprint this script is served from
 * @param {object} [options.headers]  sent to the app, e.g. {"X-CSRFToken": token}
 * @param {function} [options.onProgress]  (phase, done, total), phase "hash" or "upload"
 * @returns the app's answer from its on_upload callback
 * @throws {UploadError} with the status and the message of whoever refused
 */
export async function directUpload(
  file,
  { endpoint = BLUEPRINT, headers = {}, onProgress = () => {} } = {},
) {
  const sha256 = await sha256Hex(file, (done) => onProgress("hash", done, file.size));
  const authorized = await postJSON(
    `${endpoint}/authorize`,
    { name: file.name, size: file.size, sha256 },
    headers,
  );
  await putToBucket(authorized.url, authorized.headers, file, (done) =>
    onProgress("upload", done, file.size),
  );
  return postJSON(`${endpoint}/complete`, { ticket: authorized.ticket }, headers);
}
