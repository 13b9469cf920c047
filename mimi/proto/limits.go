package proto

// MaxKeyPackageSize bounds the encoding of a KeyPackage a provider keeps
// (uploaded, or carried by a consent grant). The largest of RFC 9420's
// suites need a few KiB; post-quantum ones tens. Without it the only bound
// was the request body, so a device's thousand KeyPackages could each be
// 16 MiB.
const MaxKeyPackageSize = 64 << 10
