// Package kubernetes holds no code: its directory is a kustomization that
// runs mimi-hub as a StatefulSet, and its tests decode every manifest
// strictly into the Kubernetes API types, build the kustomization and
// check the invariants a Raft cluster needs, and start a real node from
// the environment and Secrets a pod would get.
package kubernetes
