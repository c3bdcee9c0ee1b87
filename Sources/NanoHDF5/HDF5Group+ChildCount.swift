import CHDF5

extension HDF5Group {
    /// Number of links in the group, without reading their names (cheap even when a corrupt
    /// file claims a huge group).
    public func childCount() throws -> Int {
        try withOpenGroup { _, info in Int(clamping: info.nlinks) }
    }
}
