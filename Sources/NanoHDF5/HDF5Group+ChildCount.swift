import CHDF5

extension HDF5Group {
    /// Number of links in the group, without reading their names (cheap even when a corrupt
    /// file claims a huge group).
    public func childCount() throws -> Int {
        try file.locked {
            let gid = H5Gopen2(file.id, path, nf_h5p_default())
            guard gid >= 0 else { throw file.fail("cannot open group \(path)") }
            defer { H5Gclose(gid) }
            var info = H5G_info_t()
            guard H5Gget_info(gid, &info) >= 0 else { throw file.fail("cannot read group \(path)") }
            return Int(clamping: info.nlinks)
        }
    }
}
