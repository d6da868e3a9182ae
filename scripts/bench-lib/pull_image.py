#!/usr/bin/env python3
"""Writes an OCI image layout for bench-pull.sh: the first tree as the base layer, each further host directory
as one more gzip layer under the same path (owned by root in the layer). Tag "1", this machine's platform."""
import gzip, hashlib, json, os, platform, sys, tarfile

out, base, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)

def blob(data: bytes) -> tuple[str, int]:
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)

def root_owned(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti

def layer(src: str, arcname: str) -> tuple[dict, str]:
    tmp = f"{out}/layer.tar"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        for name in sorted(os.listdir(src)):
            t.add(os.path.join(src, name), arcname=os.path.join(arcname, name), filter=root_owned)
    raw = open(tmp, "rb").read()
    os.unlink(tmp)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    d, n = blob(gzip.compress(raw, compresslevel=6, mtime=0))
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}, diff_id

layers, diff_ids = [], []
for src, arc in [(base, "")] + [(e, e.lstrip("/")) for e in extra]:
    desc, diff_id = layer(src, arc)
    layers.append(desc)
    diff_ids.append(diff_id)
    print(f"bench-pull: layer {src}: {desc['size'] >> 20} MiB compressed", file=sys.stderr)
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids}}
cd, cs = blob(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": layers}
md, ms = blob(json.dumps(manifest).encode())
with open(f"{out}/oci-layout", "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(f"{out}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "1"}}]}, f)
