/**
 * Which OneTrainer code saved an OFT file, from its `ot_revision` header (modelSaver's
 * _create_safetensors_header: `git rev-parse --short HEAD` of the OneTrainer checkout, or
 * "git not installed" where that fails). The commits are Nerogar/OneTrainer's master history, the
 * first 12 hex digits of each, where modules/module/oft_utils.py had:
 * - the first rotation series, I + 2Q + 2Q² + 2Q³ + 2Q⁴ (`for _i in range(3, num_neumann_terms)`),
 *   and COFT: the four commits from 1336b9b8 (OFT's introduction, 14 November 2025) to 86ae3811,
 *   before b46986d6 (16 November 2025) ended the series on Q⁴ (`git rev-list b46986d6^ ^1336b9b8^`);
 * - the current series and COFT: the 146 commits from b46986d6 to 3374137f, before e928ddab
 *   (10 May 2026) removed COFT (`git rev-list e928ddab^ ^b46986d6^`).
 * Every other OneTrainer commit that writes OFT (all later ones) builds I + 2Q + 2Q² + 2Q³ + Q⁴ and has
 * no COFT; commits before 1336b9b8 have no OFT.
 */

/** OneTrainer's commits with the first series (and COFT). */
export const FIRST_SERIES_COMMITS = '1336b9b894da 607470f7e1eb 75ee0917cdcb 86ae381184db';

/** OneTrainer's commits with the current series and COFT, oldest first. */
export const COFT_COMMITS = [
  'b46986d6e433 30f8f38494a0 cef079d887dd d58eecfc7af2 e3d699cb1c28 5f2b6ecbe3aa ba80dd284dee b5d23c95591f',
  '47d00488e397 335560bd1044 062443014f38 8ed2df67b589 a1afcd32e4b4 3835ac0b5b9f 7c255ac4afac 2a55fb8f6d9b',
  '630714bb233c b24a4d983595 8aa5ca60bea0 761646dd8aaf 82aec7950ff4 da640408290a ee09be256e29 33161a2e3653',
  'b661152ed484 ad7ade7148da ac2f122109b8 0bea87e9328e e9a3ed9ab8aa 793018740eaa 124d093271d9 708d1d802885',
  'ecd6f5232b87 0866ccf2c337 975cdb27e70e 026b6e25e6f7 1ec2369d9d5f 51ec97284f3b 07512fdb69db 596fb0ab4820',
  'f16f823dbf24 14993931c510 d65ab3f9542b a353c16f53f3 c4acdef2ed5d d735e4a8b428 8fd97dcc32e8 3c97e2e81c38',
  'a535ab707e50 83125e9ab352 3250a32898ac b2ceed1d1bce 04146d4dcf39 563be6484cc9 5f6ed6a63eff ef5b00c42697',
  'aaf4d12cffce 5e952e0d7eca 661872c4661d 74db57314a46 79cafd540da2 5994d11a15bb 7fcdd13288c8 3021dbcd66ae',
  '7beeab6ec39f 9c719183dabc 31a983a5e7c7 6c878fdce25f af624064583e eadbe9cc7e51 c977906e359b b4dc2ea35f52',
  '337eabbc91a8 b564c04f6995 34019eb75921 5405289243e3 1c917fd1777f 497f5b101318 d8915b47e420 9a270603a10b',
  '427226a8d551 6dac875e9879 341751e84e3d 5940efaaa5b6 0aaf80e9f154 ce3a3295870d 10e72f3f0f0b 160fecefc9a4',
  '72dcf1b6319e aa8d802ad337 26eaaca69794 c7ab722f06c4 67d001562d41 752ac201aaed 2f441811a204 5ad53fe6538c',
  '631d9143155a 150046e25261 bfc14ef5aefb ba789a5a98c3 df09b5a22bd3 7836edc252eb a850abfaffb5 4d7ec96a4e19',
  'd6eb873e647a d0e64739c5d7 8d061000ca52 d222c7f67fea 2e4216d4c343 e0496f87d2ab 419182a783f0 0bb43fc5a0bf',
  'ecbde664af34 87935fab5f19 dfb08a00686a 45b6d9a3d7b8 9122cb6144b2 c24f5d2b1281 f9c9b51e68f4 7ca11866b0ff',
  '3ede0d670693 35023ee137bd 6525120c95b3 723229665709 cb6cab28b1cf fd0b0a422ad4 42c83d3caf85 d05d91489f01',
  '44da7650b80a f27a59d7fe95 54f64b8b4a29 848038db0a24 1cdbdaef498b e40190f83811 3db99130d275 b734d60f2d33',
  'e2f58cced85d 9fa4f9520d2c 7d62a9c948fc 4d6b2bab6459 1917a066d539 6cde50eefde3 fca80cd0c5cb 76e2453967d7',
  '423c3b36381a 3374137fb978',
].join(' ');
