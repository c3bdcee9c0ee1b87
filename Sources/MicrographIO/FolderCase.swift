import Foundation

/// Whether names in `folder` that differ only in letter case name one file there, as on macOS'
/// default (APFS, case-insensitive), on FAT and exFAT drives and on most SMB shares. Found out
/// from a name already there, spelled in the other case (nothing written: a data folder may be
/// read-only), else by making a hidden file of lower-case name and looking for its upper-case
/// twin. False where neither can tell (an empty folder that cannot be written: nothing will be
/// written there anyway) or the folder does not exist.
public func namesFoldCase(in folder: URL) -> Bool {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    let present = Set(names)
    for name in names {
        // ASCII letters only: every case-insensitive file system folds those alike.
        let other = String(decoding: name.utf8.map { b -> UInt8 in
            (0x41...0x5A).contains(b) ? b + 0x20 : (0x61...0x7A).contains(b) ? b - 0x20 : b
        }, as: UTF8.self)
        guard other != name, !present.contains(other) else { continue }
        return access(folder.appendingPathComponent(other).path, F_OK) == 0
    }
    let name = ".nanofind-case-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let lower = folder.appendingPathComponent(name), upper = folder.appendingPathComponent(name.uppercased()).path
    return removedIfInterrupted(lower) {  // a run killed in between leaves no probe behind
        let fd = open(lower.path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { return false }
        close(fd)
        defer { unlink(lower.path) }
        return access(upper, F_OK) == 0
    }
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
