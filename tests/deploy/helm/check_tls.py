#!/usr/bin/env python3
"""The chart's zero-configuration mutual TLS, in a rendering (tests/deploy/helm/run.sh):

- a CA Secret that no pod mounts, and one kubernetes.io/tls Secret per program with
  ca.crt (that CA), tls.crt and tls.key; each certificate verifies against the CA
  (openssl), has CN = the program's name and the DNS names of its Service, and its key
  is the certificate's;
- each Deployment mounts exactly its own program's TLS Secret, read-only, 0440, at the
  directory its TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE (ConfigMap) name;
- no program's ConfigMap turns TLS off (GRPC_PLAINTEXT).

usage: check_tls.py RENDERED.yaml NAMESPACE CLUSTER_DOMAIN
"""
import base64
import os
import subprocess
import sys
import tempfile

import yaml


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)


def main(path, namespace, domain):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    config = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    cas = [s for n, s in secrets.items() if n.endswith("-ca")]
    if len(cas) != 1:
        fail(f"{len(cas)} CA Secrets")
    ca_name = cas[0]["metadata"]["name"]
    ca_crt = base64.b64decode(cas[0]["data"]["ca.crt"]).decode()
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = os.path.join(tmp, "ca.crt")
        with open(ca_file, "w") as f:
            f.write(ca_crt)
        for dep in deployments:
            pod = dep["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            program, name = container["name"], dep["metadata"]["name"]
            vols = {v["name"]: v for v in pod["volumes"]}
            secret_vols = [v for v in pod["volumes"] if "secret" in v or "projected" in v]
            want = f"{name}-tls"
            if [v.get("secret", {}).get("secretName") for v in secret_vols] != [want]:
                fail(f"{name}: mounts {secret_vols}, not exactly its Secret {want}")
            if any(v.get("secret", {}).get("secretName") == ca_name for v in vols.values()):
                fail(f"{name} mounts the CA")
            (mount,) = [m for m in container["volumeMounts"]
                        if m["name"] == secret_vols[0]["name"]]
            if not mount.get("readOnly") or secret_vols[0]["secret"].get("defaultMode") != 0o440:
                fail(f"{name}: its TLS Secret is not read-only 0440")
            env = config[container["envFrom"][0]["configMapRef"]["name"]]
            for var, key in (("TLS_CA_FILE", "ca.crt"), ("TLS_CERT_FILE", "tls.crt"),
                             ("TLS_KEY_FILE", "tls.key")):
                if env.get(var) != f"{mount['mountPath']}/{key}":
                    fail(f"{name}: {var}={env.get(var)!r}, not {mount['mountPath']}/{key}")
            if "GRPC_PLAINTEXT" in env:
                fail(f"{name}: GRPC_PLAINTEXT set")
            tls = secrets.get(want)
            if tls is None:
                fail(f"no Secret {want}")
            if tls["type"] != "kubernetes.io/tls" or set(tls["data"]) != {"ca.crt", "tls.crt",
                                                                            "tls.key"}:
                fail(f"{want}: type {tls['type']}, keys {sorted(tls['data'])}")
            data = {k: base64.b64decode(v).decode() for k, v in tls["data"].items()}
            if data["ca.crt"] != ca_crt:
                fail(f"{want}: ca.crt is not the CA's")
            crt = os.path.join(tmp, f"{program}.crt")
            with open(crt, "w") as f:
                f.write(data["tls.crt"])
            if openssl("verify", "-CAfile", ca_file, crt).returncode != 0:
                fail(f"{want}: tls.crt is not signed by the CA")
            subject = openssl("x509", "-in", crt, "-noout", "-subject", "-nameopt", "RFC2253").stdout
            if subject.strip() != f"subject=CN={program}":
                fail(f"{want}: {subject.strip()}, not CN={program}")
            sans = openssl("x509", "-in", crt, "-noout", "-ext", "subjectAltName").stdout
            for dns in (program, f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{domain}"):
                if f"DNS:{dns}" not in sans:
                    fail(f"{want}: no DNS:{dns} in {sans.strip()}")
            pub_crt = openssl("x509", "-in", crt, "-noout", "-pubkey").stdout
            pub_key = openssl("pkey", "-pubout", stdin=data["tls.key"]).stdout
            if not pub_crt or pub_crt != pub_key:
                fail(f"{want}: tls.key is not the certificate's key")
    print(f"check_tls {os.path.basename(path)}: {len(deployments)} programs, each with its own "
          "certificate (CN = program) signed by the chart's CA, mounted by it alone")


if __name__ == "__main__":
    main(*sys.argv[1:4])
