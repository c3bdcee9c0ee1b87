#ifndef NANOFIND_CHDF5_SHIM_H
#define NANOFIND_CHDF5_SHIM_H
#include <hdf5.h>

// HDF5's predefined type ids and default property lists are macros over global variables
// (they call H5open first), which Swift cannot import. These functions expose them.
static inline hid_t nf_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t nf_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t nf_h5t_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t nf_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t nf_h5t_native_int16(void) { return H5T_NATIVE_INT16; }
static inline hid_t nf_h5t_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t nf_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t nf_h5t_native_uint32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t nf_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t nf_h5t_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t nf_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t nf_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t nf_h5s_all(void) { return H5S_ALL; }
static inline hid_t nf_h5e_default(void) { return H5E_DEFAULT; }
static inline hid_t nf_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline unsigned nf_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
/// Whether `path` is an HDF5 file the library can open: positive yes, 0 no, negative on error.
/// H5Fis_hdf5 is deprecated from 1.12 on (its successor, H5Fis_accessible, arrived there), and
/// absent from a library built without deprecated symbols (as a package manager may build 2.x).
static inline htri_t nf_h5_is_hdf5(const char *path) {
#if H5_VERSION_GE(1, 12, 0)
    return H5Fis_accessible(path, H5P_DEFAULT);
#else
    return H5Fis_hdf5(path);
#endif
}
/// Number of attributes of an object, or -1 (the info call changed between HDF5 1.10 and 1.12).
static inline long long nf_h5_num_attrs(hid_t oid) {
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    if (H5Oget_info3(oid, &info, H5O_INFO_NUM_ATTRS) < 0) return -1;
#else
    H5O_info_t info;
    if (H5Oget_info2(oid, &info, H5O_INFO_NUM_ATTRS) < 0) return -1;
#endif
    return (long long)info.num_attrs;
}
#endif
