// Package deploy holds mautic-sync's Kubernetes manifests (a kustomize base,
// optional components and an example overlay; see README.md in this
// directory) and the tests that keep them honest.
//
// The package has no code of its own. Its tests render every kustomization
// with kustomize as a library, decode every object strictly into the
// Kubernetes API types (or small local structs for the CRDs), and check the
// manifests against the service: probe paths and ports, setting names known
// to the config package, no secret in a ConfigMap, a grace period that covers
// the drain, a locked-down pod and NetworkPolicy, PromQL that names only
// metrics mautic-sync exports, and a distroless nonroot Dockerfile. They run
// offline in seconds; when kubectl is on PATH they also compare its
// `kubectl kustomize` output with the library's.
package deploy
