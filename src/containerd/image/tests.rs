use super::*;

const MANIFEST: &str = r#"{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:c0", "size": 700},
  "layers": [
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:l0", "size": 3000000},
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:l1", "size": 120}
  ]
}"#;

const INDEX: &str = r#"{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:arm", "size": 5,
     "platform": {"architecture": "arm64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:amd", "size": 6,
     "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:att", "size": 7,
     "platform": {"architecture": "unknown", "os": "unknown"},
     "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": "sha256:amd"}}
  ]
}"#;

#[test]
fn a_manifest_labels_its_config_and_layers_for_the_collector() {
    let m: Manifest = serde_json::from_str(MANIFEST).unwrap();
    assert_eq!(m.layers.len(), 2);
    assert_eq!(m.layers[0].size, 3_000_000);
    assert_eq!(
        gc_labels(&m),
        [
            ("containerd.io/gc.ref.content.config".to_string(), "sha256:c0".to_string()),
            ("containerd.io/gc.ref.content.l.0".to_string(), "sha256:l0".to_string()),
            ("containerd.io/gc.ref.content.l.1".to_string(), "sha256:l1".to_string()),
        ]
    );
}

#[test]
fn an_index_labels_its_manifests_and_yields_the_image_for_this_platform() {
    let i: Manifest = serde_json::from_str(INDEX).unwrap();
    assert!(i.config.is_none());
    let labels = gc_labels(&i);
    assert_eq!(labels.len(), 3);
    assert_eq!(labels[1], ("containerd.io/gc.ref.content.m.1".to_string(), "sha256:amd".to_string()));
    assert_eq!(pick_manifest(&i, "amd64").unwrap().digest, "sha256:amd");
    assert_eq!(pick_manifest(&i, "arm64").unwrap().digest, "sha256:arm");
    // No entry for the platform: the first image, never the attestation.
    assert_eq!(pick_manifest(&i, "s390x").unwrap().digest, "sha256:arm");
    let only_att = Manifest { manifests: vec![i.manifests[2].clone()], ..Default::default() };
    assert_eq!(pick_manifest(&only_att, "amd64"), None);
}

#[test]
fn chain_ids_follow_the_image_spec() {
    // The image spec's example: ChainID(A|B) = sha256(ChainID(A) + " " + DiffID(B)).
    let a = "sha256:aaaa".to_string();
    let b = "sha256:bbbb".to_string();
    let chains = chain_ids(&[a.clone(), b.clone()]);
    assert_eq!(chains[0], a);
    assert_eq!(chains[1], format!("sha256:{}", hex::encode(Sha256::digest(b"sha256:aaaa sha256:bbbb"))));
    assert!(chain_ids(&[]).is_empty());
}

#[test]
fn only_layers_above_the_last_unpacked_chain_are_unpacked() {
    let chains: Vec<String> = ["c0", "c1", "c2"].map(String::from).to_vec();
    assert_eq!(to_unpack(&chains, |_| false), 0, "nothing unpacked: all three");
    assert_eq!(to_unpack(&chains, |c| c != "c2"), 2, "a one-file change: only the top layer");
    assert_eq!(to_unpack(&chains, |_| true), 3, "all there: none");
    // A chain is only usable with its parents: a gap means unpacking from there.
    assert_eq!(to_unpack(&chains, |c| c != "c1"), 1);
}

#[test]
fn names_are_normalised_as_cri_resolves_them() {
    assert_eq!(record_names("hello", "t1", "sha256:d"), ["docker.io/library/hello:t1", "docker.io/library/hello@sha256:d"]);
    assert_eq!(normalize("team/api"), "docker.io/team/api");
    assert_eq!(normalize("registry.local:5000/api"), "registry.local:5000/api");
    assert_eq!(normalize("localhost/api"), "localhost/api");
}
