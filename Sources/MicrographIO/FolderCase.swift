import Foundation

/// Whether names in `folder` that differ only in letter case name one file there, as on macOS'
/// default (APFS, case-insensitive), on FAT and exFAT drives and on most SMB shares; found out
/// by making a hidden file of lower-case name and looking for its upper-case twin. False where
/// the folder cannot be written (nothing will be written there anyway) or does not exist.
public func namesFoldCase(in folder: URL) -> Bool {
    let name = ".nanofind-case-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let lower = folder.appendingPathComponent(name).path, upper = folder.appendingPathComponent(name.uppercased()).path
    let fd = open(lower, O_WRONLY | O_CREAT | O_EXCL, 0o600)
    guard fd >= 0 else { return false }
    close(fd)
    defer { unlink(lower) }
    return access(upper, F_OK) == 0
}

/// The identity of an existing file (device and inode), which names it however it is spelled:
/// through a link, in another case on a case-insensitive volume, by another hard link. Nil when
/// nothing is there.
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64, inode: UInt64

    public init?(_ url: URL) {
        var st = stat()
        guard stat(url.path, &st) == 0 else { return nil }
        device = UInt64(truncatingIfNeeded: st.st_dev); inode = UInt64(truncatingIfNeeded: st.st_ino)
    }
}
