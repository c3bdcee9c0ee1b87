import CHDF5

extension HDF5Dataset {
    /// Number of filters (compression, shuffle, checksums) in the dataset's pipeline; 0 means the
    /// stored bytes are the values themselves, so the dataset needs exactly its size on disk.
    public func filterCount() throws -> Int {
        try file.locked {
            let did = H5Dopen2(file.id, path, nf_h5p_default())
            guard did >= 0 else { throw file.fail("cannot open dataset \(path)") }
            defer { H5Dclose(did) }
            let plist = H5Dget_create_plist(did)
            guard plist >= 0 else { throw file.fail("cannot read the creation properties of dataset \(path)") }
            defer { H5Pclose(plist) }
            let n = H5Pget_nfilters(plist)
            guard n >= 0 else { throw file.fail("cannot read the filters of dataset \(path)") }
            return Int(n)
        }
    }
}

extension HDF5Dataset {
    /// File offset of the dataset's raw data when it is stored contiguously; nil otherwise
    /// (chunked, compact, or not yet allocated).
    public func contiguousOffset() throws -> Int? {
        try file.locked {
            let did = H5Dopen2(file.id, path, nf_h5p_default())
            guard did >= 0 else { throw file.fail("cannot open dataset \(path)") }
            defer { H5Dclose(did) }
            let offset = H5Dget_offset(did)
            return offset == haddr_t.max ? nil : Int(exactly: offset)
        }
    }
}
