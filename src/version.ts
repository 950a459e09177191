/** The library's version (package.json's; a test keeps them equal). Part of `auto`'s cache key: kernels change between versions. */
export const VERSION = '0.1.0';
