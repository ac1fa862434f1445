//! Helpers for unit tests.

use std::path::{Path, PathBuf};

/// Python that writes a minimal pure-Python wheel: `argv = [dir, name, code]`.
pub const WRITE_WHEEL_PY: &str = r#"
import base64, hashlib, os, sys, zipfile
out_dir, name, code = sys.argv[1], sys.argv[2], sys.argv[3]
files = {
    f"{name}/__init__.py": code,
    f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
    f"{name}-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: minitower-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for path, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(data)}")
record.append(f"{name}-0.1.dist-info/RECORD,,")
files[f"{name}-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
path = os.path.join(out_dir, f"{name}-0.1-py3-none-any.whl")
with zipfile.ZipFile(path, "w") as z:
    for p, text in files.items():
        z.writestr(p, text)
print(path)
"#;

/// Writes `<dir>/<name>-0.1-py3-none-any.whl` holding `<name>/__init__.py = code`.
pub fn write_wheel(dir: &Path, name: &str, code: &str) -> PathBuf {
    let out = std::process::Command::new("python3")
        .args(["-c", WRITE_WHEEL_PY])
        .arg(dir)
        .args([name, code])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
